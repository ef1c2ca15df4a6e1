// The Function App: Flex Consumption by default (Elastic Premium as a parameter), running as the
// user-assigned identity, with exactly the app settings listed in
// floworch/hosting/app_settings.py (a policy test compares the two).

@description('Name of the Function App.')
param name string

@description('Name of its plan.')
param planName string

@description('Azure region.')
param location string

@description('FlexConsumption (default) or ElasticPremium.')
@allowed([
  'FlexConsumption'
  'ElasticPremium'
])
param hostingPlan string = 'FlexConsumption'

@description('Elastic Premium only: the plan size.')
@allowed([
  'EP1'
  'EP2'
  'EP3'
])
param elasticPremiumSku string = 'EP1'

@description('Python version. 3.13 needs azure-functions 2.x (docs/deploy.md); 3.11 and 3.12 use 1.x.')
@allowed([
  '3.11'
  '3.12'
  '3.13'
])
param pythonVersion string = '3.12'

@description('Flex Consumption only: memory per instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Flex Consumption only: the most instances the app scales out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Resource id of the user-assigned identity.')
param identityId string

@description('Client id of the user-assigned identity.')
param identityClientId string

@description('Name of the host storage account.')
param storageAccountName string

@description('Flex Consumption only: URL of the blob container that holds the deployment package.')
param deploymentContainerUrl string

@description('Name of the Application Insights component.')
param appInsightsName string

@description('Fully qualified Service Bus namespace (<name>.servicebus.windows.net).')
param serviceBusNamespace string

@description('Fully qualified name of the SQL server.')
param sqlServerFqdn string

@description('Name of the SQL database.')
param sqlDatabaseName string

@description('FLOWORCH_FLOWS: path of the flows inside the deployed package.')
param flowsPath string = 'flows'

@description('FLOWORCH_STEPS_TOPIC: the topic that carries step messages (a topic of topology/servicebus.json).')
param stepsTopic string = 'flow-steps'

@description('Client id of an Entra app registration for App Service authentication in front of the HTTP API; empty leaves the API to function keys.')
param apiAuthClientId string = ''

@description('Tags for every resource.')
param tags object = {}

var isFlex = hostingPlan == 'FlexConsumption'
var useAppServiceAuth = !empty(apiAuthClientId)

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: isFlex ? 'functionapp' : 'elastic'
  sku: isFlex ? flexSku : elasticPremiumPlanSku
  properties: {
    reserved: true
  }
}

var flexSku = {
  name: 'FC1'
  tier: 'FlexConsumption'
}

var elasticPremiumPlanSku = {
  name: elasticPremiumSku
  tier: 'ElasticPremium'
}

// Flex Consumption declares the runtime here and nowhere else (no FUNCTIONS_WORKER_RUNTIME,
// FUNCTIONS_EXTENSION_VERSION, WEBSITE_RUN_FROM_PACKAGE, WEBSITE_CONTENT* or linuxFxVersion).
var flexAppConfig = {
  deployment: {
    storage: {
      type: 'blobContainer'
      value: deploymentContainerUrl
      authentication: {
        type: 'UserAssignedIdentity'
        userAssignedIdentityResourceId: identityId
      }
    }
  }
  scaleAndConcurrency: {
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
  }
  runtime: {
    name: 'python'
    version: pythonVersion
  }
}

var commonSiteConfig = {
  minTlsVersion: '1.2'
  ftpsState: 'Disabled'
}

var siteProperties = {
  serverFarmId: plan.id
  httpsOnly: true
  keyVaultReferenceIdentity: identityId
  siteConfig: isFlex ? commonSiteConfig : union(commonSiteConfig, { linuxFxVersion: 'PYTHON|${pythonVersion}' })
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'app' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: union(siteProperties, isFlex ? { functionAppConfig: flexAppConfig } : {})
}

// Exactly the settings of floworch/hosting/app_settings.py.
var floworchSettings = {
  FLOWORCH_FLOWS: flowsPath
  FLOWORCH_DB_URL: 'mssql+aioodbc://@${sqlServerFqdn}/${sqlDatabaseName}?driver=ODBC+Driver+18+for+SQL+Server&azure_client_id=${identityClientId}'
  FLOWORCH_SERVICEBUS_NAMESPACE: serviceBusNamespace
  AZURE_CLIENT_ID: identityClientId
  ServiceBusConnection__fullyQualifiedNamespace: serviceBusNamespace
  ServiceBusConnection__credential: 'managedidentity'
  ServiceBusConnection__clientId: identityClientId
  FLOWORCH_STEPS_TOPIC: stepsTopic
  AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  FLOWORCH_API_AUTH: useAppServiceAuth ? 'appservice' : 'none'
  // 'actions' (the preview SDK-type binding) also needs requirements.txt with that binding.
  FLOWORCH_FUNCTIONS_SETTLEMENT: 'auto'
}

// Platform settings Elastic Premium needs and Flex Consumption deprecates; the code reads neither.
var elasticPremiumPlatformSettings = {
  FUNCTIONS_EXTENSION_VERSION: '~4'
  FUNCTIONS_WORKER_RUNTIME: 'python'
}

resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: isFlex ? floworchSettings : union(floworchSettings, elasticPremiumPlatformSettings)
}

// App Service authentication (Microsoft Entra) in front of the app, only when a client id is
// given: FLOWORCH_API_AUTH=appservice trusts X-MS-CLIENT-PRINCIPAL headers, which the platform
// strips from callers only while this is on. Without it the API runs with auth 'none' and the
// function keys of the HTTP trigger are the only gate (every key holder is an operator).
resource authSettings 'Microsoft.Web/sites/config@2024-04-01' = if (useAppServiceAuth) {
  parent: site
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      // Third parties cannot sign in: their deliveries carry HMAC signatures, which the API
      // checks (docs/webhooks.md). The webhook listing routes still need a principal: the API
      // refuses them without one.
      excludedPaths: [
        '/api/webhooks/*'
      ]
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: apiAuthClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            'api://${apiAuthClientId}'
          ]
        }
      }
    }
  }
}

output name string = site.name
output defaultHostName string = site.properties.defaultHostName
