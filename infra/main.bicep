// Azure OpenAI chargeback: Event Hub -> Function App (Flex Consumption) -> Log Analytics custom
// tables, with the APIM logger + policy on an existing API Management service, a finance workbook
// and alert rules. `azd up` deploys it (azure.yaml); see infra/README.md.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the environment; used in resource names and the azd-env-name tag.')
param environmentName string

@minLength(1)
@description('Primary location for all resources.')
param location string

@description('Object id of the deploying user (azd sets AZURE_PRINCIPAL_ID): given read access to check events flow. Empty: none.')
param principalId string = ''

@description('Name of the EXISTING API Management service that fronts Azure OpenAI. Empty: skip the APIM logger and policy.')
param apimServiceName string = ''

@description('Resource group of the existing API Management service.')
param apimResourceGroupName string = ''

@description('Name (id) of the existing APIM API to apply policy/aoai-chargeback.policy.xml to. Empty: only the logger, named value and fragment are created.')
param apimApiName string = ''

@description('APIM policy setting aoai-chargeback-capture-streams: true buffers streamed responses to read their usage (exact cached/reasoning split, no token-by-token streaming). Default false: streams stay streams; their usage comes from APIM\'s LLM log.')
param apimCaptureStreams bool = false

@minValue(1)
@maxValue(32)
@description('Event Hub partitions (fixed after creation on Standard). More partitions = more parallel function instances.')
param eventHubPartitionCount int = 4

@minValue(1)
@maxValue(7)
@description('Event Hub message retention in days: how long the function can fall behind without losing events.')
param eventHubRetentionDays int = 7

@minValue(30)
@maxValue(730)
@description('Interactive retention of the chargeback tables (days).')
param tableRetentionDays int = 730

@minValue(30)
@maxValue(4383)
@description('Total retention of the chargeback tables, archive included (days). Finance usually keeps 7 years.')
param tableTotalRetentionDays int = 2556

@minValue(1)
@description('Days the dead-letter container keeps what failed (bodies kept for replay) before the lifecycle rule deletes it.')
param deadletterRetentionDays int = 30

@minValue(1)
@description('Days a published export stays immutable (WORM) in the exports container. Finance usually keeps 7 years.')
param exportsImmutabilityDays int = 2555

@description('true: dead-letters keep no request or response body (DEADLETTER_REDACT_BODIES); a recount on replay is then impossible.')
param deadletterRedactBodies bool = false

@minValue(0)
@description('Hours after month end before the monthly close runs (late events).')
param rollupGraceHours int = 48

@minValue(1)
@description('Minutes a stream charged on its estimate waits for APIM\'s LLM log (GATEWAY_LOG_WAIT_MINUTES); after that it keeps its flagged estimate.')
param gatewayLogWaitMinutes int = 120

@description('PTU allocation: how many input tokens one output token counts as (PTU_OUTPUT_WEIGHT).')
param ptuOutputWeight string = '4'

@description('E-mail address that receives budget, unpriced-usage and dead-letter alerts. Empty: no e-mail receiver.')
param alertEmail string = ''

@secure()
@description('Optional https webhook the budget check posts to (ALERT_WEBHOOK_URL).')
param alertWebhookUrl string = ''

@allowed(['off', 'on'])
@description('Budget actions at the gateway: on = budgets.csv rows with action throttle or suspend are enforced on the APIM service (needs apimServiceName). Default off: budgets only alert.')
param budgetEnforcement string = 'off'

@description('APIM subscription ids that budget enforcement never throttles or suspends, comma-separated.')
param budgetEnforcementExempt string = ''

@minValue(40)
@maxValue(1000)
@description('Flex Consumption: maximum instances of the function app.')
param maximumInstanceCount int = 40

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var functionAppName = '${abbrs.webSitesFunctions}chargeback-${resourceToken}'
var eventHubName = 'aoai-usage'
var consumerGroupName = 'chargeback-function'
var deadletterContainer = 'deadletter'
var exportsContainer = 'exports'
var configContainer = 'config'
var deploymentContainer = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'
var deployApim = !empty(apimServiceName) && !empty(apimResourceGroupName)

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

// The existing API Management service: its system-assigned identity sends to Event Hub.
resource apim 'Microsoft.ApiManagement/service@2023-09-01-preview' existing = if (deployApim) {
  name: apimServiceName
  scope: resourceGroup(deployApim ? apimResourceGroupName : rg.name)
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}chargeback-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    workspaceName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    appInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    dataCollectionRuleName: '${abbrs.insightsDataCollectionRules}chargeback-${resourceToken}'
    location: location
    tags: tags
    tableRetentionDays: tableRetentionDays
    tableTotalRetentionDays: tableTotalRetentionDays
  }
}

module eventHubs 'app/eventhubs.bicep' = {
  name: 'eventhubs'
  scope: rg
  params: {
    name: '${abbrs.eventHubNamespaces}${resourceToken}'
    location: location
    tags: tags
    eventHubName: eventHubName
    partitionCount: eventHubPartitionCount
    retentionDays: eventHubRetentionDays
    consumerGroupName: consumerGroupName
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    deadletterContainer: deadletterContainer
    exportsContainer: exportsContainer
    configContainer: configContainer
    deploymentContainer: deploymentContainer
    workspaceId: monitoring.outputs.workspaceId
    deadletterRetentionDays: deadletterRetentionDays
    exportsImmutabilityDays: exportsImmutabilityDays
  }
}

// The webhook URL is a secret (it carries its own token): kept in Key Vault, read by reference.
module keyVault 'app/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: '${abbrs.keyVaultVaults}${resourceToken}'
    location: location
    tags: tags
    alertWebhookUrl: alertWebhookUrl
    functionPrincipalId: identity.outputs.principalId
  }
}

module function 'app/function.bicep' = {
  name: 'function'
  scope: rg
  params: {
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageBlobEndpoint: storage.outputs.blobEndpoint
    storageQueueEndpoint: storage.outputs.queueEndpoint
    storageTableEndpoint: storage.outputs.tableEndpoint
    deploymentContainer: deploymentContainer
    deadletterContainer: deadletterContainer
    exportsContainer: exportsContainer
    configContainer: configContainer
    eventHubNamespaceFqdn: eventHubs.outputs.fullyQualifiedNamespace
    eventHubName: eventHubName
    consumerGroupName: consumerGroupName
    logsIngestionEndpoint: monitoring.outputs.logsIngestionEndpoint
    dataCollectionRuleImmutableId: monitoring.outputs.dataCollectionRuleImmutableId
    usageStreamName: monitoring.outputs.usageStreamName
    alertsStreamName: monitoring.outputs.alertsStreamName
    workspaceCustomerId: monitoring.outputs.workspaceCustomerId
    appInsightsConnectionString: monitoring.outputs.appInsightsConnectionString
    rollupGraceHours: rollupGraceHours
    gatewayLogWaitMinutes: gatewayLogWaitMinutes
    ptuOutputWeight: ptuOutputWeight
    alertWebhookSetting: keyVault.outputs.alertWebhookSetting
    deadletterRedactBodies: deadletterRedactBodies
    maximumInstanceCount: maximumInstanceCount
    budgetEnforcement: deployApim ? budgetEnforcement : 'off'
    budgetEnforcementExempt: budgetEnforcementExempt
    apimResourceId: deployApim ? apim.id : ''
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    functionPrincipalId: identity.outputs.principalId
    apimPrincipalId: deployApim ? apim.identity.principalId : ''
    userPrincipalId: principalId
    eventHubNamespaceName: eventHubs.outputs.namespaceName
    eventHubName: eventHubName
    dataCollectionRuleName: monitoring.outputs.dataCollectionRuleName
    workspaceName: monitoring.outputs.workspaceName
    appInsightsName: monitoring.outputs.appInsightsName
    storageAccountName: storage.outputs.name
    deadletterContainer: deadletterContainer
    exportsContainer: exportsContainer
  }
}

// The throttle list the policy reads, and (enforcement on) the Function's role on the APIM instance.
module apimEnforcement 'app/apim-enforcement.bicep' = if (deployApim) {
  name: 'apim-enforcement'
  scope: resourceGroup(deployApim ? apimResourceGroupName : rg.name)
  params: {
    apimServiceName: apimServiceName
    functionPrincipalId: identity.outputs.principalId
    enforcementOn: budgetEnforcement == 'on'
  }
}

module apimChargeback 'app/apim.bicep' = if (deployApim) {
  name: 'apim-chargeback'
  scope: resourceGroup(deployApim ? apimResourceGroupName : rg.name)
  params: {
    apimServiceName: apimServiceName
    apiName: apimApiName
    eventHubNamespaceFqdn: eventHubs.outputs.fullyQualifiedNamespace
    eventHubName: eventHubName
    captureStreamResponses: apimCaptureStreams
    workspaceId: monitoring.outputs.workspaceId
  }
  // The logger connects with APIM's identity: it needs Azure Event Hubs Data Sender first; the
  // policy reads the throttle list's named value, which must exist before the policy is saved.
  dependsOn: [rbac, apimEnforcement]
}

module workbook 'app/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    location: location
    tags: tags
    workspaceId: monitoring.outputs.workspaceId
  }
}

module alerts 'app/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    workspaceId: monitoring.outputs.workspaceId
    storageAccountName: storage.outputs.name
    deadletterContainer: deadletterContainer
    alertEmail: alertEmail
  }
  // The rules query the custom tables, which must exist when a rule is validated.
  dependsOn: [monitoring]
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = function.outputs.name
output AZURE_CLIENT_ID string = identity.outputs.clientId
output EVENTHUB_NAMESPACE string = eventHubs.outputs.namespaceName
output EVENTHUB_FULLY_QUALIFIED_NAMESPACE string = eventHubs.outputs.fullyQualifiedNamespace
output EVENTHUB_NAME string = eventHubName
output EVENTHUB_CONSUMER_GROUP string = consumerGroupName
output LOGS_INGESTION_ENDPOINT string = monitoring.outputs.logsIngestionEndpoint
output LOGS_DCR_IMMUTABLE_ID string = monitoring.outputs.dataCollectionRuleImmutableId
output LOG_ANALYTICS_WORKSPACE_ID string = monitoring.outputs.workspaceCustomerId
output STORAGE_BLOB_ENDPOINT string = storage.outputs.blobEndpoint
output DEADLETTER_CONTAINER string = deadletterContainer
output EXPORTS_CONTAINER string = exportsContainer
output CONFIG_CONTAINER string = configContainer
output APIM_LOGGER_ID string = deployApim ? apimChargeback.outputs.loggerName : ''
