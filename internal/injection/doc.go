// Package injection is the mutating webhook that puts the agent into each
// pod a WorkerPool governs, at creation: the agent binary, copied by an init
// container into a shared volume, becomes the chosen container's entrypoint;
// the pod learns its name and namespace through the downward API; the code
// volume (and, for a code image, the code container) is added; and the pod
// starts at the pool's revision. Pods without the softreload.dev/pool label
// never reach it.
package injection
