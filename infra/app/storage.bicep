// Storage for dead-letters, monthly exports, the Functions host and the Flex deployment package.
// Entra ID only (no shared keys). Blob write logs go to the workspace: the dead-letter alert
// counts writes into the dead-letter container from them (see alerts.bicep for why).
param name string
param location string
param tags object
param deadletterContainer string
param exportsContainer string
param configContainer string
param deploymentContainer string
param workspaceId string

@description('GRS: exports are finance records; dead-letters are the only copy of events that failed.')
param skuName string = 'Standard_GRS'

@description('Days a published export (FOCUS, summary, manifest) stays immutable (WORM): no overwrite, no delete.')
@minValue(1)
param exportsImmutabilityDays int = 2555

@description('Days dead-letters (the bodies kept for replay) are kept before the lifecycle rule deletes them.')
@minValue(1)
param deadletterRetentionDays int = 30

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  #checkov:skip=CKV_AZURE_35: Flex Consumption without a VNet reaches its storage over the public endpoint; access is Entra ID only (allowSharedKeyAccess false), never anonymous.
  #checkov:skip=CKV_AZURE_59: same reason as CKV_AZURE_35; public network access is needed without VNet integration, and every request must carry an Entra ID token.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    // Version-level immutability (the exports container) needs blob versioning.
    isVersioningEnabled: true
    deleteRetentionPolicy: {
      enabled: true
      days: 14
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 14
    }
  }
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for container in [
  deadletterContainer
  configContainer
  deploymentContainer
]: {
  parent: blobService
  name: container
  properties: {
    publicAccess: 'None'
  }
}]

// Published exports are finance records: WORM. Version-level immutability with a default policy on
// the container makes every blob version written there immutable for exportsImmutabilityDays (no
// overwrite of its bytes, no delete); a re-run that writes the same name again (a reconciliation)
// makes a new version, and the published one stays as it was. The policy is unlocked so that a
// first deployment can be corrected; lock it once validated (az storage container
// immutability-policy lock), after which not even an owner can shorten it.
resource exports 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: exportsContainer
  properties: {
    publicAccess: 'None'
    immutableStorageWithVersioning: {
      enabled: true
    }
  }
}

resource exportsWorm 'Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies@2023-05-01' = {
  parent: exports
  name: 'default'
  properties: {
    immutabilityPeriodSinceCreationInDays: exportsImmutabilityDays
    allowProtectedAppendWrites: false
  }
}

// Exports are read at month end and rarely after: cool after 30 days, archive after a year.
// Dead-letters are for replay and investigation, and they hold request and response bodies: kept
// deadletterRetentionDays (main.bicep), then deleted with their older versions.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'exports-to-cool'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${exportsContainer}/'
              ]
            }
            actions: {
              baseBlob: {
                tierToCool: {
                  daysAfterModificationGreaterThan: 30
                }
                tierToArchive: {
                  daysAfterModificationGreaterThan: 365
                }
              }
            }
          }
        }
        {
          name: 'deadletter-expiry'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${deadletterContainer}/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: deadletterRetentionDays
                }
              }
              version: {
                delete: {
                  daysAfterCreationGreaterThan: deadletterRetentionDays
                }
              }
            }
          }
        }
      ]
    }
  }
}

// StorageWrite logs feed the dead-letter growth alert (StorageBlobLogs in the workspace).
resource blobDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'blob-writes-to-workspace'
  scope: blobService
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        category: 'StorageWrite'
        enabled: true
      }
    ]
  }
}

output name string = storage.name
output id string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output tableEndpoint string = storage.properties.primaryEndpoints.table
