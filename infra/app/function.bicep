// The chargeback Function App on Flex Consumption (Python 3.11), running as a user-assigned
// identity with identity-based connections only. App setting names are the ones
// chargeback/settings.py reads (tests/test_infra.py holds them in step).
param name string
param planName string
param location string
param tags object
param identityId string
param identityClientId string
param storageBlobEndpoint string
param storageQueueEndpoint string
param storageTableEndpoint string
param deploymentContainer string
param deadletterContainer string
param exportsContainer string
@description('Blob container with rate_card.csv, deployments.csv and budgets.csv (read at run time).')
param configContainer string
param eventHubNamespaceFqdn string
param eventHubName string
param consumerGroupName string
param logsIngestionEndpoint string
param dataCollectionRuleImmutableId string
param usageStreamName string
param alertsStreamName string
param workspaceCustomerId string
param appInsightsConnectionString string
param rollupGraceHours int
@description('GATEWAY_LOG_WAIT_MINUTES: how long a stream charged on its estimate waits for APIM\'s LLM log.')
param gatewayLogWaitMinutes int = 120

@description('PTU allocation: how many input tokens one output token counts as.')
param ptuOutputWeight string
@secure()
@description('ALERT_WEBHOOK_URL: a Key Vault reference (@Microsoft.KeyVault(SecretUri=...)) or empty.')
param alertWebhookSetting string
param deadletterRedactBodies bool = false
param maximumInstanceCount int
@allowed(['off', 'on'])
@description('Budget actions (throttle, suspend) at the gateway: off (default) or on.')
param budgetEnforcement string = 'off'
@description('APIM subscription ids never throttled or suspended, comma-separated.')
param budgetEnforcementExempt string = ''
@description('APIM instance the budget actions are applied to (resource id); empty when there is none.')
param apimResourceId string = ''
param instanceMemoryMB int = 2048

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  #checkov:skip=CKV_AZURE_225: Flex Consumption zone redundancy exists only in some regions; events wait in Event Hub (7 days) while the app is down, so none are lost.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  #checkov:skip=CKV_AZURE_17: no HTTP triggers (Event Hub and timers only), so client certificates have nothing to protect.
  #checkov:skip=CKV_AZURE_222: without VNet integration, deployment (azd / func publish) needs the public endpoint; there are no HTTP triggers to expose.
  #checkov:skip=CKV_AZURE_212: Flex Consumption scales from zero per partition load; failover comes from the Event Hub checkpoint, not from standing instances.
  #checkov:skip=CKV_AZURE_213: no HTTP triggers: nothing for an HTTP health check to probe; App Insights and the dead-letter alert watch the app.
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'chargeback' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    // Key Vault references (ALERT_WEBHOOK_URL) resolve with the app's user-assigned identity.
    keyVaultReferenceIdentity: identityId
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [for setting in items(appSettings): {
        name: setting.key
        value: setting.value
      }]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainer}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// Names as chargeback/settings.py reads them (the environment name is the field name upper-cased),
// plus the Functions host's own identity-based connections (AzureWebJobsStorage__*, EVENTHUB__*).
var appSettings = {
  // Functions host storage (checkpoints, timer leases): identity-based.
  AzureWebJobsStorage__blobServiceUri: storageBlobEndpoint
  AzureWebJobsStorage__queueServiceUri: storageQueueEndpoint
  AzureWebJobsStorage__tableServiceUri: storageTableEndpoint
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  // Event Hub trigger connection "EVENTHUB".
  EVENTHUB__fullyQualifiedNamespace: eventHubNamespaceFqdn
  EVENTHUB__credential: 'managedidentity'
  EVENTHUB__clientId: identityClientId
  EVENTHUB_NAME: eventHubName
  EVENTHUB_CONSUMER_GROUP: consumerGroupName
  // Sink: Log Analytics through the Logs Ingestion API.
  CHARGEBACK_SINK: 'loganalytics'
  LOGS_INGESTION_ENDPOINT: logsIngestionEndpoint
  LOGS_DCR_IMMUTABLE_ID: dataCollectionRuleImmutableId
  LOGS_STREAM_NAME: usageStreamName
  LOGS_ALERTS_STREAM_NAME: alertsStreamName
  // Rollups and budget checks query the workspace (public cloud query endpoint by default).
  LOG_ANALYTICS_WORKSPACE_ID: workspaceCustomerId
  LOG_ANALYTICS_QUERY_ENDPOINT: ''
  AZURE_CLIENT_ID: identityClientId
  // Dead-letters and exports in Blob Storage.
  STORAGE_BLOB_ENDPOINT: storageBlobEndpoint
  DEADLETTER_CONTAINER: deadletterContainer
  EXPORTS_CONTAINER: exportsContainer
  // The admin's rate card, deployments map and budgets (infra/README.md): never the shipped examples.
  CONFIG_CONTAINER: configContainer
  ROLLUP_GRACE_HOURS: string(rollupGraceHours)
  GATEWAY_LOG_WAIT_MINUTES: string(gatewayLogWaitMinutes)
  PTU_OUTPUT_WEIGHT: ptuOutputWeight
  ALERT_WEBHOOK_URL: alertWebhookSetting
  // Budget enforcement (off unless budgetEnforcement = 'on'): the APIM management API of this cloud.
  BUDGET_ENFORCEMENT: budgetEnforcement
  BUDGET_ENFORCEMENT_EXEMPT: budgetEnforcementExempt
  BUDGET_ENFORCEMENT_COUNT_ESTIMATED: 'false'
  APIM_RESOURCE_ID: apimResourceId
  APIM_MANAGEMENT_ENDPOINT: environment().resourceManager
  APIM_THROTTLE_NAMED_VALUE: 'aoai-chargeback-throttled'
  DEADLETTER_REDACT_BODIES: string(deadletterRedactBodies)
}

// No publishing with user name and password: deployments go through Entra ID (azd / func CLI).
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = functionApp.name
output id string = functionApp.id
