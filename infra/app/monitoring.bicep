// Log Analytics workspace, the two chargeback custom tables, the Logs Ingestion data collection
// rule and Application Insights for the function's own logs.
//
// The tables' columns and the DCR's stream declarations are NOT written here: both come from
// chargeback/schemas/tables.json, the file chargeback/schema.py reads too (one source of truth).
param workspaceName string
param appInsightsName string
param dataCollectionRuleName string
param location string
param tags object
param tableRetentionDays int
param tableTotalRetentionDays int

var tableSchemas = loadJsonContent('../../chargeback/schemas/tables.json')
var tableNames = [
  'AOAIChargeback_CL'
  'AOAIChargebackAlerts_CL'
]

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: workspaceName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
    features: {
      disableLocalAuth: true
    }
  }
}

// Tables API: columns as {name, type, description}; types are Log Analytics column types, which is
// what tables.json holds (string, int, long, real, boolean, dateTime, dynamic).
resource tables 'Microsoft.OperationalInsights/workspaces/tables@2022-10-01' = [for tableName in tableNames: {
  parent: workspace
  name: tableName
  properties: {
    plan: 'Analytics'
    retentionInDays: tableRetentionDays
    totalRetentionInDays: tableTotalRetentionDays
    schema: {
      name: tableName
      description: tableSchemas[tableName].description
      columns: [for column in tableSchemas[tableName].columns: {
        name: column.name
        type: column.type
        description: column.description
      }]
    }
  }
}]

// Direct DCR: its own logsIngestion endpoint, no separate data collection endpoint needed.
// Stream column types are DCR types (string, int, long, real, boolean, datetime, dynamic): only
// dateTime is spelled differently from the table type.
resource dataCollectionRule 'Microsoft.Insights/dataCollectionRules@2023-03-11' = {
  name: dataCollectionRuleName
  location: location
  tags: tags
  kind: 'Direct'
  properties: {
    description: 'Azure OpenAI chargeback rows from the Function App (Logs Ingestion API).'
    streamDeclarations: {
      'Custom-AOAIChargeback_CL': {
        columns: [for column in tableSchemas.AOAIChargeback_CL.columns: {
          name: column.name
          type: column.type == 'dateTime' ? 'datetime' : column.type
        }]
      }
      'Custom-AOAIChargebackAlerts_CL': {
        columns: [for column in tableSchemas.AOAIChargebackAlerts_CL.columns: {
          name: column.name
          type: column.type == 'dateTime' ? 'datetime' : column.type
        }]
      }
    }
    destinations: {
      logAnalytics: [
        {
          name: 'chargebackWorkspace'
          workspaceResourceId: workspace.id
        }
      ]
    }
    dataFlows: [for tableName in tableNames: {
      streams: [
        'Custom-${tableName}'
      ]
      destinations: [
        'chargebackWorkspace'
      ]
      transformKql: 'source'
      outputStream: 'Custom-${tableName}'
    }]
  }
  dependsOn: [tables]
}

// AOAIChargeback(): the usage table with one row per call (the latest UsageRevision of each
// RequestId), saved as a workspace function so that any query, alert or user can start from it
// instead of deduplicating every row themselves. The workbook's queries inline the same body.
resource usageFunction 'Microsoft.OperationalInsights/workspaces/savedSearches@2020-08-01' = {
  parent: workspace
  name: 'aoai-chargeback-function'
  properties: {
    category: 'Azure OpenAI chargeback'
    displayName: 'AOAIChargeback(): one row per call, latest UsageRevision'
    query: loadTextContent('../../chargeback/kql/functions/AOAIChargeback.kql')
    functionAlias: 'AOAIChargeback'
    version: 2
  }
  dependsOn: [tables]
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

output workspaceId string = workspace.id
output workspaceName string = workspace.name
output workspaceCustomerId string = workspace.properties.customerId
output dataCollectionRuleName string = dataCollectionRule.name
output dataCollectionRuleImmutableId string = dataCollectionRule.properties.immutableId
output logsIngestionEndpoint string = dataCollectionRule.properties.endpoints.logsIngestion
output usageStreamName string = 'Custom-AOAIChargeback_CL'
output alertsStreamName string = 'Custom-AOAIChargebackAlerts_CL'
output appInsightsName string = appInsights.name
output appInsightsConnectionString string = appInsights.properties.ConnectionString
