// floworch on Azure: Service Bus (entities from topology/servicebus.json), a Function App on Flex
// Consumption (or Elastic Premium) running as a user-assigned identity, host storage by identity,
// Log Analytics + Application Insights, and Azure SQL with Microsoft Entra-only authentication.
// `azd up` deploys it (azure.yaml); so does `az deployment group create` (docs/deploy.md).

targetScope = 'resourceGroup'

@description('Environment name (azd sets it); part of every resource name.')
@minLength(1)
@maxLength(40)
param environmentName string

@description('Azure region of every resource.')
param location string = resourceGroup().location

@description('Service Bus tier: Standard, or Premium (partitions, private endpoints).')
@allowed([
  'Standard'
  'Premium'
])
param serviceBusSku string = 'Standard'

@description('Premium Service Bus only: messaging units.')
@allowed([
  1
  2
  4
  8
  16
])
param serviceBusPremiumCapacity int = 1

@description('Premium Service Bus only: partitions (fixed once the namespace exists).')
@allowed([
  1
  2
  4
])
param serviceBusPremiumPartitions int = 1

@description('Function App plan: FlexConsumption (default) or ElasticPremium.')
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

@description('Python version of the Function App. 3.13 needs azure-functions 2.x (docs/deploy.md).')
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

@description('Display name of the Microsoft Entra group that administers the SQL server.')
param sqlAdminGroupName string

@description('Object id of that Entra group.')
param sqlAdminGroupObjectId string

@description('SQL database SKU (GP_S_Gen5_1: serverless General Purpose).')
param sqlDatabaseSku string = 'GP_S_Gen5_1'

@description('Allow Azure services through the SQL firewall (needed without VNet integration; docs/deploy.md).')
param sqlAllowAzureServices bool = true

@description('Public IPv4 address of the machine that runs the SQL grant and migration steps; empty adds no firewall rule.')
param deployerIpAddress string = ''

@description('Object id of an operator allowed to send to Service Bus (floworch trigger --servicebus); azd passes you (AZURE_PRINCIPAL_ID).')
param operatorPrincipalId string = ''

@description('Kind of that principal: User, ServicePrincipal (CI) or Group.')
@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param operatorPrincipalType string = 'User'

@description('FLOWORCH_FLOWS: path of the flows inside the deployed package.')
param flowsPath string = 'flows'

@description('FLOWORCH_STEPS_TOPIC: the topic that carries step messages.')
param stepsTopic string = 'flow-steps'

@description('Client id of an Entra app registration for App Service authentication in front of the HTTP API; empty: function keys only.')
param apiAuthClientId string = ''

@description('Days Log Analytics keeps data.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

var token = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var tags = {
  'azd-env-name': environmentName
  application: 'floworch'
}
var deploymentContainerName = 'app-package-${take(token, 8)}'

module identity 'modules/identity.bicep' = {
  name: 'identity'
  params: {
    name: 'id-floworch-${token}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    workspaceName: 'log-floworch-${token}'
    appInsightsName: 'appi-floworch-${token}'
    location: location
    retentionInDays: logRetentionDays
    publisherPrincipalId: identity.outputs.principalId
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    name: 'stfloworch${take(token, 12)}'
    location: location
    deploymentContainerName: deploymentContainerName
    appPrincipalId: identity.outputs.principalId
    tags: tags
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'servicebus'
  params: {
    name: 'sb-floworch-${token}'
    location: location
    sku: serviceBusSku
    premiumCapacity: serviceBusPremiumCapacity
    premiumPartitions: serviceBusPremiumPartitions
    appPrincipalId: identity.outputs.principalId
    operatorPrincipalId: operatorPrincipalId
    operatorPrincipalType: operatorPrincipalType
    tags: tags
  }
}

module sql 'modules/sql.bicep' = {
  name: 'sql'
  params: {
    serverName: 'sql-floworch-${token}'
    databaseName: 'floworch'
    location: location
    adminGroupName: sqlAdminGroupName
    adminGroupObjectId: sqlAdminGroupObjectId
    databaseSku: sqlDatabaseSku
    allowAzureServices: sqlAllowAzureServices
    deployerIpAddress: deployerIpAddress
    tags: tags
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  params: {
    name: 'func-floworch-${token}'
    planName: 'plan-floworch-${token}'
    location: location
    hostingPlan: hostingPlan
    elasticPremiumSku: elasticPremiumSku
    pythonVersion: pythonVersion
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
    appInsightsName: monitoring.outputs.appInsightsName
    serviceBusNamespace: serviceBus.outputs.fullyQualifiedNamespace
    sqlServerFqdn: sql.outputs.serverFqdn
    sqlDatabaseName: sql.outputs.databaseName
    flowsPath: flowsPath
    stepsTopic: stepsTopic
    apiAuthClientId: apiAuthClientId
    tags: tags
  }
}

// azd writes these to the environment (.azure/<env>/.env) for the hooks and for you; none is a secret.
output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = resourceGroup().name
output FUNCTION_APP_NAME string = functionApp.outputs.name
output FUNCTION_APP_HOSTNAME string = functionApp.outputs.defaultHostName
output SERVICEBUS_NAMESPACE_FQDN string = serviceBus.outputs.fullyQualifiedNamespace
output SQL_SERVER_FQDN string = sql.outputs.serverFqdn
output SQL_DATABASE_NAME string = sql.outputs.databaseName
output APP_INSIGHTS_NAME string = monitoring.outputs.appInsightsName
output APP_IDENTITY_NAME string = identity.outputs.name
output APP_IDENTITY_CLIENT_ID string = identity.outputs.clientId
