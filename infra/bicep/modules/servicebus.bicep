// The Service Bus namespace and every entity of topology/servicebus.json (the file the emulator
// loads and `floworch topology apply` applies), read at build time with loadJsonContent and
// deployed with loops over its topics, subscriptions, rules and queues: a new entity in that file
// needs no change here. Local (SAS key) auth is disabled; the app identity gets Data Receiver and
// Data Sender on this namespace only.

@description('Name of the Service Bus namespace.')
param name string

@description('Azure region.')
param location string

@description('Standard, or Premium for isolation, private endpoints and partitions.')
@allowed([
  'Standard'
  'Premium'
])
param sku string = 'Standard'

@description('Premium only: messaging units (1, 2, 4, 8 or 16).')
@allowed([
  1
  2
  4
  8
  16
])
param premiumCapacity int = 1

@description('Premium only: partitions (1, 2 or 4; fixed once the namespace exists).')
@allowed([
  1
  2
  4
])
param premiumPartitions int = 1

@description('Principal id of the app identity that receives and sends.')
param appPrincipalId string

@description('Object id of an operator (you, or the CI identity) allowed to send messages, e.g. `floworch trigger --servicebus`; empty grants nobody else.')
param operatorPrincipalId string = ''

@description('Kind of that principal: User (azd sets AZURE_PRINCIPAL_ID to you) or ServicePrincipal (CI).')
@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param operatorPrincipalType string = 'User'

@description('Tags for every resource.')
param tags object = {}

var topology = loadJsonContent('../../../topology/servicebus.json')
var topics = topology.?topics ?? []
var queues = topology.?queues ?? []
var isPremium = sku == 'Premium'

// Which keys of the topology document each entity kind carries to ARM (the document's schema:
// floworch/emulator/topology.schema.json). Durations may be ISO-8601 strings or whole seconds.
var topicKeys = [
  'defaultMessageTimeToLive'
  'requiresDuplicateDetection'
  'duplicateDetectionHistoryTimeWindow'
  'maxSizeInMegabytes'
  'autoDeleteOnIdle'
]
var queueKeys = [
  'lockDuration'
  'maxDeliveryCount'
  'defaultMessageTimeToLive'
  'deadLetteringOnMessageExpiration'
  'requiresDuplicateDetection'
  'duplicateDetectionHistoryTimeWindow'
  'requiresSession'
  'maxSizeInMegabytes'
  'autoDeleteOnIdle'
  'forwardTo'
  'forwardDeadLetteredMessagesTo'
]
var subscriptionKeys = [
  'lockDuration'
  'maxDeliveryCount'
  'defaultMessageTimeToLive'
  'deadLetteringOnMessageExpiration'
  'deadLetteringOnFilterEvaluationExceptions'
  'requiresSession'
  'autoDeleteOnIdle'
  'forwardTo'
  'forwardDeadLetteredMessagesTo'
]
var durationKeys = [
  'lockDuration'
  'defaultMessageTimeToLive'
  'duplicateDetectionHistoryTimeWindow'
  'autoDeleteOnIdle'
]

@description('ISO-8601 duration from a topology duration (an ISO-8601 string or whole seconds).')
func isoDuration(value string) string => startsWith(value, 'P') ? value : 'PT${value}S'

@description('The ARM properties of one topology entity: its listed keys that are set, durations as ISO-8601.')
func entityProperties(doc object, keys array, durations array) object => toObject(filter(items(doc), entry => contains(keys, entry.key) && entry.value != null), entry => entry.key, entry => contains(durations, entry.key) ? isoDuration(string(entry.value)) : entry.value)

@description('ARM correlation filter from a topology one (`subject` is ARM `label`).')
func correlationFilter(doc object) object => toObject(filter(items(doc), entry => entry.value != null), entry => entry.key == 'subject' ? 'label' : entry.key, entry => entry.value)

@description('ARM filter of a topology rule: its correlation filter, its SQL filter, or match-all (1=1).')
func ruleFilter(doc object) object => (doc.?correlationFilter ?? null) != null ? { filterType: 'CorrelationFilter', correlationFilter: correlationFilter(doc.correlationFilter) } : { filterType: 'SqlFilter', sqlFilter: { sqlExpression: doc.?sqlFilter ?? '1=1' } }

@description('ARM rule properties of a topology rule: its filter, and its SQL action when it has one.')
func ruleProperties(doc object) object => union(ruleFilter(doc), (doc.?action ?? null) != null ? { action: { sqlExpression: doc.action } } : {})

// One row per subscription, with the index of its topic.
var subscriptions = flatten(map(range(0, length(topics)), t => map(topics[t].?subscriptions ?? [], sub => {
  topic: t
  doc: sub
})))

// One row per rule, with the index of its subscription. Every subscription is created with an
// implicit match-all rule named $Default; the first rule of a subscription is deployed under that
// name so that it replaces the match-all rule instead of sitting beside it (rules are ORed), unless
// the document already names one of its rules $Default.
var rules = flatten(map(range(0, length(subscriptions)), s => map(range(0, length(subscriptions[s].doc.?rules ?? [])), r => {
  subscription: s
  name: r == 0 && !contains(map(subscriptions[s].doc.rules, rule => rule.name), '$Default') ? '$Default' : subscriptions[s].doc.rules[r].name
  doc: subscriptions[s].doc.rules[r]
})))

var namespaceProperties = {
  disableLocalAuth: true
  minimumTlsVersion: '1.2'
}

// Built-in roles: Azure Service Bus Data Receiver and Azure Service Bus Data Sender.
var dataReceiver = '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
var dataSender = '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
var serviceBusRoles = [
  dataReceiver
  dataSender
]

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: sku
    tier: sku
    capacity: isPremium ? premiumCapacity : null
  }
  properties: union(namespaceProperties, isPremium ? { premiumMessagingPartitions: premiumPartitions } : {})
}

resource topicResources 'Microsoft.ServiceBus/namespaces/topics@2024-01-01' = [for topic in topics: {
  parent: namespace
  name: topic.name
  properties: entityProperties(topic, topicKeys, durationKeys)
}]

resource subscriptionResources 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2024-01-01' = [for sub in subscriptions: {
  parent: topicResources[sub.topic]
  name: sub.doc.name
  properties: entityProperties(sub.doc, subscriptionKeys, durationKeys)
}]

resource ruleResources 'Microsoft.ServiceBus/namespaces/topics/subscriptions/rules@2024-01-01' = [for rule in rules: {
  parent: subscriptionResources[rule.subscription]
  name: rule.name
  properties: ruleProperties(rule.doc)
}]

resource queueResources 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = [for queue in queues: {
  parent: namespace
  name: queue.name
  properties: entityProperties(queue, queueKeys, durationKeys)
}]

resource dataRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in serviceBusRoles: {
  name: guid(namespace.id, appPrincipalId, role)
  scope: namespace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}]

resource operatorSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(namespace.id, operatorPrincipalId, dataSender)
  scope: namespace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', dataSender)
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
  }
}

output name string = namespace.name
// serviceBusEndpoint is https://<name>.servicebus.windows.net:443/ (or another cloud's suffix).
output fullyQualifiedNamespace string = split(replace(namespace.properties.serviceBusEndpoint, 'https://', ''), ':')[0]
