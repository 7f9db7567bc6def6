// Package config reads a standalone agent's config file: the same groups
// and strategy as a WorkerPool, plus where the code is and where the agent
// listens for commands and metrics. Defaults and validation are those of the
// WorkerPool API, so a config is refused for the same reasons as a pool,
// with the field named.
package config
