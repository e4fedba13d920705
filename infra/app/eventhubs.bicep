// Event Hubs namespace (Entra ID only: local/SAS auth disabled), the usage hub and the function's
// consumer group. APIM's log-to-eventhub sends with partition-key = APIM subscription id.
param name string
param location string
param tags object
param eventHubName string
@minValue(1)
@maxValue(32)
param partitionCount int
@minValue(1)
@maxValue(7)
param retentionDays int
param consumerGroupName string

resource namespace 'Microsoft.EventHub/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
    capacity: 1
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    isAutoInflateEnabled: true
    maximumThroughputUnits: 4
    publicNetworkAccess: 'Enabled'
  }
}

resource hub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' = {
  parent: namespace
  name: eventHubName
  properties: {
    partitionCount: partitionCount
    messageRetentionInDays: retentionDays
  }
}

resource consumerGroup 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2024-01-01' = {
  parent: hub
  name: consumerGroupName
  properties: {
    userMetadata: 'Chargeback Function App (on_usage_events)'
  }
}

output namespaceName string = namespace.name
output namespaceId string = namespace.id
output eventHubId string = hub.id
// EVENTHUB__fullyQualifiedNamespace and the APIM logger's endpointAddress: host name only.
output fullyQualifiedNamespace string = replace(replace(namespace.properties.serviceBusEndpoint, 'https://', ''), ':443/', '')
