// Budget enforcement on the EXISTING API Management service (deployed into its resource group):
// the named value the policy reads for throttled subscriptions, and, when enforcement is on, the
// Function's role on this APIM instance only (not its resource group) to suspend subscriptions and
// rewrite that named value. See infra/README.md "Budget enforcement".
param apimServiceName string
@description('Principal id of the Function App identity (the caller of the APIM management API).')
param functionPrincipalId string
@description('Grant the role only when budget enforcement is on.')
param enforcementOn bool = false
param throttleNamedValueName string = 'aoai-chargeback-throttled'

var roles = {
  // API Management Service Contributor: Microsoft.ApiManagement/service/* on this instance only;
  // the narrowest built-in role that can PATCH subscriptions/{sid} (state) and PUT namedValues/{id}.
  apimServiceContributor: '312a565d-c81f-4fd8-895a-4e21e48d571c'
}

resource apim 'Microsoft.ApiManagement/service@2023-09-01-preview' existing = {
  name: apimServiceName
}

// The throttle list (base64 JSON of {}: nobody throttled). The Function owns its value afterwards
// and restores it within the hour when a redeploy resets it here. It must exist before a policy
// that reads {{aoai-chargeback-throttled}} is saved.
resource throttleList 'Microsoft.ApiManagement/service/namedValues@2023-09-01-preview' = {
  parent: apim
  name: throttleNamedValueName
  properties: {
    displayName: throttleNamedValueName
    value: 'e30='
    secret: false
  }
}

resource functionManagesApim 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (enforcementOn) {
  name: guid(apim.id, functionPrincipalId, roles.apimServiceContributor)
  scope: apim
  properties: {
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.apimServiceContributor)
  }
}

output throttleNamedValueName string = throttleList.name
