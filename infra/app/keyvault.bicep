// Key Vault for the app's one secret: the budget alert webhook URL (Slack and Teams webhook URLs
// carry their own token). The Function reads it through a Key Vault reference with its managed
// identity (Key Vault Secrets User on this secret only); the URL never sits in app settings.
param name string
param location string
param tags object
@secure()
@description('The webhook URL to keep; empty: no secret, no reference.')
param alertWebhookUrl string
@description('Principal of the Function App identity that resolves the reference.')
param functionPrincipalId string

var roles = {
  // Key Vault Secrets User: read a secret's value (on the webhook secret only).
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  #checkov:skip=CKV_AZURE_109: without VNet integration (privateNetworking = false) App Service resolves Key Vault references over the public endpoint, which the firewall would block; access is Entra ID RBAC only.
  #checkov:skip=CKV_AZURE_189: same reason as CKV_AZURE_109: a Flex Consumption app without VNet integration reaches the vault over its public endpoint.
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource webhookSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(alertWebhookUrl)) {
  #checkov:skip=CKV_AZURE_41: a webhook URL does not expire on a schedule; it is rotated when the channel owner regenerates it.
  #checkov:skip=CKV_AZURE_114: contentType is set below ('text/uri'); checkov does not read the properties of a conditional (if) resource.
  parent: vault
  name: 'alert-webhook-url'
  properties: {
    value: alertWebhookUrl
    contentType: 'text/uri'
  }
}

resource functionReadsWebhook 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(alertWebhookUrl)) {
  name: guid(vault.id, functionPrincipalId, roles.keyVaultSecretsUser)
  scope: webhookSecret
  properties: {
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
  }
}

output name string = vault.name
@description('The app setting value: a Key Vault reference to the secret, or empty without a webhook.')
output alertWebhookSetting string = empty(alertWebhookUrl) ? '' : '@Microsoft.KeyVault(SecretUri=${vault.properties.vaultUri}secrets/alert-webhook-url)'
