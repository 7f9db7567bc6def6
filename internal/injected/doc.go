// Package injected is what the injection webhook gives a governed pod and
// the agent in it reads: the names of the variables it sets, the name of
// the code container, and where that container puts a code image's code.
// The manager (internal/injection) and the agent (agent/pod) both import
// it, so that the manager does not link the agent's code to learn a name.
package injected
