// On the EXISTING API Management service (deployed into its resource group): the Event Hub logger
// (managed identity), the named value the policies use for its id, the "aoai-chargeback" policy
// fragment for any API, and policy/aoai-chargeback.policy.xml on one API when apiName is given.
// Prerequisite: the APIM service has a system-assigned identity (it gets Azure Event Hubs Data
// Sender on the hub in rbac.bicep).
param apimServiceName string
@description('The API to apply the full policy to; empty: leave API policies alone (use the fragment).')
param apiName string = ''
param eventHubNamespaceFqdn string
param eventHubName string
param loggerName string = 'aoai-chargeback'
@description('Policy setting aoai-chargeback-capture-streams: true reads (and so buffers) streamed responses for exact cached/reasoning splits; false (default) leaves streams unbuffered and takes their usage from APIM\'s LLM log.')
param captureStreamResponses bool = false
@description('Resource id of the Log Analytics workspace that receives APIM\'s GatewayLlmLogs and GatewayLogs (late usage of streams). Empty: no diagnostic setting.')
param workspaceId string = ''

var namedValueName = 'aoai-chargeback-logger-id'
var captureStreamsNamedValueName = 'aoai-chargeback-capture-streams'

resource apim 'Microsoft.ApiManagement/service@2023-09-01-preview' existing = {
  name: apimServiceName
}

resource logger 'Microsoft.ApiManagement/service/loggers@2023-09-01-preview' = {
  parent: apim
  name: loggerName
  properties: {
    loggerType: 'azureEventHub'
    description: 'Azure OpenAI chargeback events (contract v1) to Event Hub, by managed identity.'
    isBuffered: true
    credentials: {
      name: eventHubName
      endpointAddress: eventHubNamespaceFqdn
      identityClientId: 'SystemAssigned'
    }
  }
}

// The fragment (and hand-attached copies of the policy) name the logger by this named value.
resource loggerIdNamedValue 'Microsoft.ApiManagement/service/namedValues@2023-09-01-preview' = {
  parent: apim
  name: namedValueName
  properties: {
    displayName: namedValueName
    value: logger.name
    secret: false
  }
}

// The one documented policy setting: "false" keeps streams unbuffered (policy/README.md).
resource captureStreamsNamedValue 'Microsoft.ApiManagement/service/namedValues@2023-09-01-preview' = {
  parent: apim
  name: captureStreamsNamedValueName
  properties: {
    displayName: captureStreamsNamedValueName
    value: captureStreamResponses ? 'true' : 'false'
    secret: false
  }
}

// Usage of unbuffered streams: APIM's LLM log (token counts per call, after the stream ends) and
// the gateway log (its ApimSubscriptionId, joined on CorrelationId), as resource-specific tables
// (ApiManagementGatewayLlmLog, ApiManagementGatewayLogs) in the chargeback workspace.
resource gatewayLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = if (!empty(workspaceId)) {
  name: 'aoai-chargeback-gateway-logs'
  scope: apim
  properties: {
    workspaceId: workspaceId
    logAnalyticsDestinationType: 'Dedicated'
    logs: [
      {
        category: 'GatewayLlmLogs'
        enabled: true
      }
      {
        category: 'GatewayLogs'
        enabled: true
      }
    ]
  }
}

resource fragment 'Microsoft.ApiManagement/service/policyFragments@2023-09-01-preview' = {
  parent: apim
  name: 'aoai-chargeback'
  properties: {
    description: 'Emits one Azure OpenAI chargeback event per call. Include first in inbound, and in outbound and on-error.'
    format: 'xml'
    value: loadTextContent('../../policy/aoai-chargeback.fragment.xml')
  }
  dependsOn: [loggerIdNamedValue, captureStreamsNamedValue]
}

resource api 'Microsoft.ApiManagement/service/apis@2023-09-01-preview' existing = if (!empty(apiName)) {
  parent: apim
  name: empty(apiName) ? 'none' : apiName
}

// Replaces the API's policy. The XML is well-formed XML (expressions XML-escaped), hence format xml.
resource apiPolicy 'Microsoft.ApiManagement/service/apis/policies@2023-09-01-preview' = if (!empty(apiName)) {
  parent: api
  name: 'policy'
  properties: {
    format: 'xml'
    value: replace(loadTextContent('../../policy/aoai-chargeback.policy.xml'), '{{${namedValueName}}}', logger.name)
  }
  dependsOn: [captureStreamsNamedValue]
}

output loggerName string = logger.name
