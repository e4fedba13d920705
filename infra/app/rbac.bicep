// Role assignments, least privilege, each on the narrowest scope that works.
param functionPrincipalId string
@description('System-assigned identity of the existing API Management service; empty to skip.')
param apimPrincipalId string = ''
@description('The deploying user, to check events flow; empty to skip.')
param userPrincipalId string = ''
param eventHubNamespaceName string
param eventHubName string
param dataCollectionRuleName string
param workspaceName string
param appInsightsName string
param storageAccountName string
param deadletterContainer string
param exportsContainer string

var roles = {
  // Azure Event Hubs Data Receiver: the function's trigger reads the hub.
  eventHubsDataReceiver: 'a638d3c7-ab3a-418d-83e6-5f17a39d4fde'
  // Azure Event Hubs Data Sender: APIM's log-to-eventhub logger writes to the hub.
  eventHubsDataSender: '2b629674-e913-4c01-ae53-ef4638d8f975'
  // Monitoring Metrics Publisher: Logs Ingestion API on the DCR; AAD telemetry to App Insights.
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  // Log Analytics Reader: rollups and budget checks query the workspace.
  logAnalyticsReader: '73c42c96-874c-492b-b04d-ab87d138a893'
  // Storage Blob Data Owner: the Functions host's identity-based AzureWebJobsStorage needs Owner
  // (it includes Storage Blob Data Contributor, which dead-letters, exports and the Flex deployment
  // package container need).
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  // Storage Blob Data Reader: the deploying user can read dead-letters and exports (container scope).
  storageBlobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
}

resource namespace 'Microsoft.EventHub/namespaces@2024-01-01' existing = {
  name: eventHubNamespaceName
}

resource hub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' existing = {
  parent: namespace
  name: eventHubName
}

resource dataCollectionRule 'Microsoft.Insights/dataCollectionRules@2023-03-11' existing = {
  name: dataCollectionRuleName
}

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

// What the deploying user may read: the dead-letters and the exports, not the host's containers.
resource readableContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = [for container in [
  deadletterContainer
  exportsContainer
]: {
  parent: blobService
  name: container
}]

resource functionReceivesEvents 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hub.id, functionPrincipalId, roles.eventHubsDataReceiver)
  scope: hub
  properties: {
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventHubsDataReceiver)
  }
}

resource apimSendsEvents 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(apimPrincipalId)) {
  name: guid(hub.id, apimPrincipalId, roles.eventHubsDataSender)
  scope: hub
  properties: {
    principalId: apimPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventHubsDataSender)
  }
}

resource functionIngestsLogs 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(dataCollectionRule.id, functionPrincipalId, roles.monitoringMetricsPublisher)
  scope: dataCollectionRule
  properties: {
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
  }
}

resource functionSendsTelemetry 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, functionPrincipalId, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
  }
}

// Workspace scope: table-level read access needs two custom roles (workspace query actions plus
// tables/data/read on each table); the workspace is the chargeback's own (monitoring.bicep), so the
// built-in role on it reads only chargeback and diagnostic data.
resource functionQueriesLogs 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, functionPrincipalId, roles.logAnalyticsReader)
  scope: workspace
  properties: {
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.logAnalyticsReader)
  }
}

resource functionUsesStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, functionPrincipalId, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
  }
}

resource userQueriesLogs 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(workspace.id, userPrincipalId, roles.logAnalyticsReader)
  scope: workspace
  properties: {
    principalId: userPrincipalId
    principalType: 'User'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.logAnalyticsReader)
  }
}

resource userReadsBlobs 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (container, i) in [
  deadletterContainer
  exportsContainer
]: if (!empty(userPrincipalId)) {
  name: guid(readableContainers[i].id, userPrincipalId, roles.storageBlobDataReader)
  scope: readableContainers[i]
  properties: {
    principalId: userPrincipalId
    principalType: 'User'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader)
  }
}]
