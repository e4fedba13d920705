// The finance workbook on the workspace. Its queries are the files in chargeback/kql/workbook/,
// which tests run on DuckDB (duckdb-kql) against the tables' real columns; each dedupes on
// RequestId first (Event Hub delivers at least once, Log Analytics keeps duplicates).
param location string
param tags object
param workspaceId string

var queries = [
  {
    name: 'cost-by-subscription'
    title: 'Cost by subscription'
    query: loadTextContent('../../chargeback/kql/workbook/cost_by_subscription.kql')
    visualization: 'table'
    timeContext: null
  }
  {
    name: 'cost-by-model-month'
    title: 'Cost by model per month (last 12 months)'
    query: loadTextContent('../../chargeback/kql/workbook/cost_by_model_month.kql')
    visualization: 'barchart'
    timeContext: { durationMs: 31536000000 }
  }
  {
    name: 'top-spenders'
    title: 'Top spenders'
    query: loadTextContent('../../chargeback/kql/workbook/top_spenders.kql')
    visualization: 'barchart'
    timeContext: null
  }
  {
    name: 'cost-by-cost-center'
    title: 'Cost by cost center this month, against its budgets'
    query: loadTextContent('../../chargeback/kql/workbook/cost_by_cost_center.kql')
    visualization: 'table'
    timeContext: { durationMs: 2764800000 }
  }
  {
    name: 'cost-by-tag'
    title: 'Cost by request tag (pick the tag key above)'
    query: loadTextContent('../../chargeback/kql/workbook/cost_by_tag.kql')
    visualization: 'table'
    timeContext: null
  }
  {
    name: 'budget-burn'
    title: 'Budget burn this month, with month-end forecast'
    query: loadTextContent('../../chargeback/kql/workbook/budget_burn.kql')
    visualization: 'table'
    timeContext: { durationMs: 2764800000 }
  }
  {
    name: 'usage-source-mix'
    title: 'How usage was counted (reported, stream-usage, recounted, estimated)'
    query: loadTextContent('../../chargeback/kql/workbook/usage_source_mix.kql')
    visualization: 'piechart'
    timeContext: null
  }
  {
    name: 'unpriced-usage'
    title: 'Unpriced usage (add these models to the rate card)'
    query: loadTextContent('../../chargeback/kql/workbook/unpriced_usage.kql')
    visualization: 'table'
    timeContext: null
  }
]

var headerItems = [
  {
    type: 1
    name: 'introduction'
    content: {
      json: '## Azure OpenAI chargeback\nCosts per APIM subscription from the AOAIChargeback_CL table (one row per call, deduplicated on RequestId). Costs are null for unpriced models; cache hits and non-2xx calls cost zero.'
    }
  }
  {
    type: 9
    name: 'parameters'
    content: {
      version: 'KqlParameterItem/1.0'
      style: 'pills'
      queryType: 0
      resourceType: 'microsoft.operationalinsights/workspaces'
      parameters: [
        {
          id: 'e0b7b7a4-2f0a-4c55-9d7e-1c2b3a4d5e6f'
          version: 'KqlParameterItem/1.0'
          name: 'TimeRange'
          label: 'Time range'
          type: 4
          isRequired: true
          value: {
            durationMs: 2592000000
          }
          typeSettings: {
            allowCustom: true
            selectableValues: [
              { durationMs: 86400000 }
              { durationMs: 604800000 }
              { durationMs: 2592000000 }
              { durationMs: 7776000000 }
            ]
          }
        }
        {
          id: '5b1f0c8e-7d2a-4e39-8a61-3c9d2f4b7e10'
          version: 'KqlParameterItem/1.0'
          name: 'TagKey'
          label: 'Tag key (x-chargeback-<key> header)'
          type: 1
          isRequired: true
          value: 'project'
        }
      ]
    }
  }
]

var queryItems = [for item in queries: {
  type: 3
  name: item.name
  content: union({
    version: 'KqlItem/1.0'
    query: item.query
    size: 0
    title: item.title
    queryType: 0
    resourceType: 'microsoft.operationalinsights/workspaces'
    visualization: item.visualization
  }, item.timeContext == null ? { timeContextFromParameter: 'TimeRange' } : { timeContext: item.timeContext })
}]

var workbookContent = {
  version: 'Notebook/1.0'
  items: concat(headerItems, queryItems)
  fallbackResourceIds: [
    workspaceId
  ]
  '$schema': 'https://github.com/Microsoft/Application-Insights-Workbooks/blob/master/schema/workbook.json'
}

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, 'aoai-chargeback-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'Azure OpenAI chargeback'
    category: 'workbook'
    sourceId: toLower(workspaceId)
    version: 'Notebook/1.0'
    serializedData: string(workbookContent)
  }
}

output id string = workbook.id
