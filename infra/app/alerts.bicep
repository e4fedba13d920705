// Alert rules and the action group that receives them.
//
// Each log alert runs every `frequency` and keeps only rows INGESTED since its last run
// (ingestion_time() > ago(frequency)) within a wider query window, so a row that arrives late
// is still seen, and is seen once, instead of falling between two windows.
//
// Dead-letter growth: a log alert on StorageBlobLogs (blob write logs, sent by storage.bicep's
// diagnostic setting), counting writes into the dead-letter container. The alternatives do not
// work: the BlobCount metric has no container dimension and is refreshed once a day, the
// Transactions metric has no container dimension either (exports would trigger it), and a query
// on the function's traces would depend on the wording of a log line. Every dead-letter is a blob
// written under <account>/<container>/, whichever code path wrote it.
param location string
param tags object
param resourceToken string
param workspaceId string
param storageAccountName string
param deadletterContainer string
param alertEmail string

@minValue(0)
@description('Dead-letters per 15 minutes above which to alert (0: alert on any).')
param deadletterThreshold int = 0

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag-chargeback-${resourceToken}'
  location: 'Global'
  tags: tags
  properties: {
    groupShortName: 'chargeback'
    enabled: true
    emailReceivers: empty(alertEmail) ? [] : [
      {
        name: 'finance-ops'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

var budgetQuery = '''
AOAIChargebackAlerts_CL
| where ingestion_time() > ago(15m)
| where AlertKind in ("actual", "forecast")
| summarize arg_max(TimeGenerated, *) by AlertId
| project AlertId, Month, SubscriptionId, SubscriptionName, CostCenter, Owner, AlertKind, ThresholdPct, Budget, Spend, Forecast, Currency, Message
'''

var unpricedQuery = '''
AOAIChargeback_CL
| where ingestion_time() > ago(1h)
| where PricingStatus == "unpriced"
| summarize arg_max(UsageRevision, *) by RequestId
| summarize Calls = count(), TotalTokens = sum(TotalTokens) by Deployment, Model
'''

var deadletterQuery = format('''
StorageBlobLogs
| where ingestion_time() > ago(15m)
| where OperationName in ("PutBlob", "PutBlockList", "CopyBlob")
| where ObjectKey startswith "/{0}/{1}/"
| summarize DeadLetters = count()
''', storageAccountName, deadletterContainer)

resource budgetAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-chargeback-budget-${resourceToken}'
  location: location
  tags: tags
  properties: {
    displayName: 'Azure OpenAI chargeback: budget threshold crossed'
    description: 'A subscription crossed a budget threshold (actual or forecast): rows written to AOAIChargebackAlerts_CL by the daily budget check.'
    severity: 2
    enabled: true
    scopes: [
      workspaceId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT6H'
    criteria: {
      allOf: [
        {
          query: budgetQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [
            {
              name: 'SubscriptionId'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: false
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource unpricedAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-chargeback-unpriced-${resourceToken}'
  location: location
  tags: tags
  properties: {
    displayName: 'Azure OpenAI chargeback: unpriced usage'
    description: 'Calls priced with no rate-card row (PricingStatus unpriced): add the model or deployment to the rate card.'
    severity: 3
    enabled: true
    scopes: [
      workspaceId
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'P2D'
    criteria: {
      allOf: [
        {
          query: unpricedQuery
          timeAggregation: 'Total'
          metricMeasureColumn: 'Calls'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [
            {
              name: 'Deployment'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: false
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource deadletterAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-chargeback-deadletters-${resourceToken}'
  location: location
  tags: tags
  properties: {
    displayName: 'Azure OpenAI chargeback: events dead-lettered'
    description: 'Events were written to the dead-letter container (rejected or failed writes): inspect them and replay.'
    severity: 2
    enabled: true
    scopes: [
      workspaceId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    // StorageBlobLogs appears once the diagnostic setting has sent its first write.
    skipQueryValidation: true
    criteria: {
      allOf: [
        {
          query: deadletterQuery
          timeAggregation: 'Total'
          metricMeasureColumn: 'DeadLetters'
          operator: 'GreaterThan'
          threshold: deadletterThreshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: false
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

output actionGroupId string = actionGroup.id
