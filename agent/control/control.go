package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/softreload/softreload/agent/supervisor"
	"github.com/softreload/softreload/api/v1alpha1"
)

// Backend is what the control socket drives: the agent.
type Backend interface {
	// Reload snapshots the code and reloads to it; it returns when the
	// reload is over.
	Reload(ctx context.Context) (v1alpha1.AgentStatus, error)
	// RequestReload starts a reload and returns at once.
	RequestReload() error
	Status() supervisor.Status
	Stop()
}

// ErrReloadRefused is wrapped by a Backend's Reload or RequestReload when
// the agent does not take reloads from its control socket (in a pod, they
// come from the WorkerPool). The socket answers 409 Conflict with the
// reason.
var ErrReloadRefused = errors.New("reload refused")

// ReloadResponse is the answer to POST /reload.
type ReloadResponse struct {
	Status v1alpha1.AgentStatus `json:"status"`
	// Error says why the reload failed, if it did.
	Error string `json:"error,omitempty"`
}

// Listen creates the control socket at path, readable and writable by its
// owner only. A socket left by a dead agent is replaced; a live one is an
// error.
func Listen(path string) (net.Listener, error) {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another agent is running", path)
	}
	_ = os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return l, nil
}

// Handler serves the control API for b.
func Handler(b Backend) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, b.Status())
	})
	mux.HandleFunc("POST /reload", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("wait") == "" {
			err := b.RequestReload()
			if errors.Is(err, ErrReloadRefused) {
				http.Error(w, err.Error(), http.StatusConflict)
				return
			}
			if err != nil {
				writeJSON(w, http.StatusInternalServerError, ReloadResponse{Status: b.Status().Agent, Error: err.Error()})
				return
			}
			writeJSON(w, http.StatusAccepted, ReloadResponse{Status: b.Status().Agent})
			return
		}
		st, err := b.Reload(r.Context())
		if errors.Is(err, ErrReloadRefused) {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		resp := ReloadResponse{Status: st}
		if err != nil {
			resp.Error = err.Error()
		}
		writeJSON(w, http.StatusOK, resp)
	})
	mux.HandleFunc("POST /stop", func(w http.ResponseWriter, r *http.Request) {
		b.Stop()
		w.WriteHeader(http.StatusAccepted)
	})
	return mux
}

// Serve serves the control API of b on l and, if metricsL is not nil,
// /metrics (the metrics handler), /healthz and /status on metricsL. Either
// listener may be nil. The returned function shuts the servers down.
func Serve(b Backend, l, metricsL net.Listener, metrics http.Handler) (shutdown func()) {
	var servers []*http.Server
	serve := func(l net.Listener, h http.Handler) {
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, srv)
		go func() { _ = srv.Serve(l) }()
	}
	if l != nil {
		serve(l, Handler(b))
	}
	if metricsL != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metrics)
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
		mux.Handle("GET /status", Handler(b))
		serve(metricsL, mux)
	}
	return func() {
		for _, srv := range servers {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = srv.Shutdown(ctx)
			cancel()
		}
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// Client talks to an agent's control socket.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client of the control socket at path.
func NewClient(path string) *Client {
	return &Client{socket: path, http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}}
}

// Status returns the agent's status.
func (c *Client) Status(ctx context.Context) (supervisor.Status, error) {
	var st supervisor.Status
	err := c.do(ctx, http.MethodGet, "/status", &st)
	return st, err
}

// Reload asks for a reload; with wait it returns when the reload is over.
func (c *Client) Reload(ctx context.Context, wait bool) (ReloadResponse, error) {
	path := "/reload"
	if wait {
		path += "?wait=1"
	}
	var r ReloadResponse
	err := c.do(ctx, http.MethodPost, path, &r)
	return r, err
}

// Stop asks the agent to drain its workers and exit.
func (c *Client) Stop(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/stop", nil)
}

func (c *Client) do(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://agent"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) {
			return fmt.Errorf("no agent answers on %s: %w (is `agent run` running with the same --config?)", c.socket, op.Err)
		}
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 && resp.StatusCode != http.StatusInternalServerError {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("agent answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// WriteTable prints st as `agent status` does: the agent's state, one line
// per worker, then one line per group on how its stopped workers drained.
func WriteTable(w io.Writer, st supervisor.Status, now time.Time) error {
	a := st.Agent
	fmt.Fprintf(w, "revision %s  state %s  ready %d/%d", a.Running, a.State, a.Ready, a.Total)
	if a.Revision != a.Running {
		fmt.Fprintf(w, "  (%s %s)", strings.ToLower(string(a.State)), a.Revision)
	}
	fmt.Fprintln(w)
	if a.Message != "" {
		fmt.Fprintf(w, "message: %s\n", a.Message)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tSLOT\tPID\tREVISION\tSTATE\tUPTIME\tRESTARTS\tMEMORY")
	for _, ws := range st.Workers {
		pid, uptime, mem := "-", "-", "-"
		if ws.PID > 0 {
			pid = fmt.Sprint(ws.PID)
		}
		if !ws.Started.IsZero() && ws.PID > 0 {
			uptime = now.Sub(ws.Started).Round(time.Second).String()
		}
		if ws.MemoryBytes > 0 {
			mem = fmt.Sprintf("%.1fM", float64(ws.MemoryBytes)/(1<<20))
		}
		state := string(ws.State)
		if ws.Next {
			state += " (new)"
		}
		if !ws.Reloadable {
			state += " (not reloadable)"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%d\t%s\n", ws.Group, ws.Slot, pid, ws.Revision, state, uptime, ws.Restarts, mem)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := writeDrains(w, st.Groups); err != nil {
		return err
	}
	return writeSpecs(w, st.Groups, st.Agent.Groups)
}

// writeSpecs prints, per group, the spec its workers run (a short hash),
// its count, whether it is reloadable and its addresses; and for a group
// that runs an older spec than the revision's, why; for a group that is not
// reloadable with addresses (a gateway), its open connections. An agent that
// does not report specs prints nothing.
func writeSpecs(w io.Writer, groups []supervisor.GroupStatus, reported []v1alpha1.AgentGroupStatus) error {
	if len(groups) == 0 || groups[0].Spec == "" {
		return nil
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tSPEC\tCOUNT\tRELOADABLE\tLISTEN\tNOTE")
	for _, g := range groups {
		listen, note := "-", "-"
		if len(g.Listen) > 0 {
			var as []string
			for _, a := range g.Listen {
				as = append(as, string(a))
			}
			listen = strings.Join(as, ",")
		}
		switch g.Outdated {
		case v1alpha1.GroupSpecChanged:
			note = "older spec: the revision changes this group, which is not reloadable"
		case v1alpha1.GroupRemoved:
			note = "older spec: the revision removes this group, which is not reloadable"
		}
		if !g.Reloadable && len(g.Listen) > 0 {
			for _, r := range reported {
				if r.Name == g.Name {
					note = strings.TrimPrefix(note+"; ", "-; ") + fmt.Sprintf("%d open connections", r.Connections)
				}
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%t\t%s\t%s\n", g.Name, g.Spec, g.Count, g.Reloadable, listen, note)
	}
	return tw.Flush()
}

// writeDrains prints, per group, how many workers were stopped, how many of
// them were killed by their stop timeout, and how long the last and the
// slowest of the recent ones took to drain. An agent that does not report
// drains prints nothing.
func writeDrains(w io.Writer, groups []supervisor.GroupStatus) error {
	if len(groups) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tSTOPPED\tKILLED\tLAST DRAIN\tSLOWEST DRAIN")
	for _, g := range groups {
		last, slowest := "-", "-"
		if g.Stopped > 0 {
			last, slowest = seconds(g.LastDrainSeconds), seconds(g.SlowestDrainSeconds)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", g.Name, g.Stopped, g.Killed, last, slowest)
	}
	return tw.Flush()
}

// seconds prints a number of seconds as a duration, to the millisecond.
func seconds(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond).String()
}
