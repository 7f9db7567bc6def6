// Package agentaccess decides the rights of the agents in a namespace: one
// Role and one RoleBinding, named softreload-agent, that let the service
// accounts of the governed pods read and patch pods and read their pools'
// revision snapshots, and nothing else. The ValidatingAdmissionPolicy in
// config/policy takes that RoleBinding as its parameter and narrows "patch
// pods" to "patch the softreload.dev/status annotation of your own pod".
package agentaccess
