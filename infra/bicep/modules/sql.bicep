// Azure SQL logical server + database with Microsoft Entra-only authentication: no SQL login or
// password exists. The admin is an Entra group; the app identity becomes a database user in a
// separate step (infra/scripts/sql_grant.py), and the schema migration runs as another step with
// an identity that has DDL rights (docs/deploy.md).

@description('Name of the logical SQL server.')
param serverName string

@description('Name of the database.')
param databaseName string

@description('Azure region.')
param location string

@description('Display name of the Microsoft Entra group that administers the server.')
param adminGroupName string

@description('Object id of that Entra group.')
param adminGroupObjectId string

@description('Database SKU: GP_S_Gen5_1 is serverless General Purpose (auto-pauses when idle).')
param databaseSku string = 'GP_S_Gen5_1'

@description('Serverless only: minutes idle before the database pauses (-1 never pauses).')
param autoPauseDelayMinutes int = 60

@description('Allow connections from Azure services (the 0.0.0.0 firewall rule). A Flex Consumption app without VNet integration has no fixed outbound address, so it needs this; with VNet integration and a private endpoint, set false (docs/deploy.md).')
param allowAzureServices bool = true

@description('Public IPv4 address of whoever runs the SQL grant and migration steps (your machine or a CI runner); empty adds no rule.')
param deployerIpAddress string = ''

@description('Tags for every resource.')
param tags object = {}

var isServerless = contains(databaseSku, '_S_')
var publicAccess = allowAzureServices || !empty(deployerIpAddress)

resource server 'Microsoft.Sql/servers@2023-08-01' = {
  name: serverName
  location: location
  tags: tags
  properties: {
    minimalTlsVersion: '1.2'
    publicNetworkAccess: publicAccess ? 'Enabled' : 'Disabled'
    administrators: {
      administratorType: 'ActiveDirectory'
      azureADOnlyAuthentication: true
      login: adminGroupName
      sid: adminGroupObjectId
      tenantId: tenant().tenantId
      principalType: 'Group'
    }
  }
}

resource entraOnly 'Microsoft.Sql/servers/azureADOnlyAuthentications@2023-08-01' = {
  parent: server
  name: 'Default'
  properties: {
    azureADOnlyAuthentication: true
  }
}

resource database 'Microsoft.Sql/servers/databases@2023-08-01' = {
  parent: server
  name: databaseName
  location: location
  tags: tags
  sku: {
    name: databaseSku
  }
  properties: union(databaseProperties, isServerless ? { autoPauseDelay: autoPauseDelayMinutes, minCapacity: json('0.5') } : {})
}

var databaseProperties = {
  collation: 'SQL_Latin1_General_CP1_CI_AS'
  zoneRedundant: false
}

resource allowAzure 'Microsoft.Sql/servers/firewallRules@2023-08-01' = if (allowAzureServices) {
  parent: server
  name: 'AllowAllWindowsAzureIps'
  properties: {
    startIpAddress: '0.0.0.0'
    endIpAddress: '0.0.0.0'
  }
}

resource allowDeployer 'Microsoft.Sql/servers/firewallRules@2023-08-01' = if (!empty(deployerIpAddress)) {
  parent: server
  name: 'deployer'
  properties: {
    startIpAddress: deployerIpAddress
    endIpAddress: deployerIpAddress
  }
}

output serverName string = server.name
output serverFqdn string = server.properties.fullyQualifiedDomainName
output databaseName string = database.name
