// Package worker is the worker side of softreload's contract, for Go
// programs that the agent runs: it takes the listening sockets the agent
// passes (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES), reads the worker's
// identity (SOFTRELOAD_GROUP, SOFTRELOAD_WORKER_ID, SOFTRELOAD_REVISION,
// SOFTRELOAD_CODE_DIR), says READY=1 on NOTIFY_SOCKET, and drains an
// http.Server on the stop signal the way docs/agent.md asks: stop accepting,
// answer the requests in flight with "Connection: close", close each
// kept-alive connection only when no request is on it, then return.
//
// The whole contract for an HTTP worker is one call:
//
//	func main() {
//		if err := worker.ServeHTTP(handler); err != nil {
//			log.Fatal(err)
//		}
//	}
//
// The package uses the standard library only.
package worker
