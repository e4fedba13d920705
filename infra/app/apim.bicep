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

var namedValueName = 'aoai-chargeback-logger-id'

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

resource fragment 'Microsoft.ApiManagement/service/policyFragments@2023-09-01-preview' = {
  parent: apim
  name: 'aoai-chargeback'
  properties: {
    description: 'Emits one Azure OpenAI chargeback event per call. Include first in inbound, and in outbound and on-error.'
    format: 'xml'
    value: loadTextContent('../../policy/aoai-chargeback.fragment.xml')
  }
  dependsOn: [loggerIdNamedValue]
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
}

output loggerName string = logger.name
