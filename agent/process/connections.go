package process

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/softreload/softreload/agent/sockets"
	"github.com/softreload/softreload/agent/supervisor"
	"github.com/softreload/softreload/api/v1alpha1"
)

// WithConnections returns st with the open connections of each group that
// is not reloadable (a gateway) counted in st.Agent.Groups
// (AgentGroupStatus.Connections): those its workers hold, accepted on its
// listen addresses. A group it cannot count keeps 0, and the first error
// says why.
func WithConnections(st supervisor.Status) (supervisor.Status, error) {
	st.Agent.Groups = slices.Clone(st.Agent.Groups)
	var firstErr error
	for i := range st.Agent.Groups {
		g := &st.Agent.Groups[i]
		j := slices.IndexFunc(st.Groups, func(gs supervisor.GroupStatus) bool { return gs.Name == g.Name })
		if j < 0 || st.Groups[j].Reloadable || len(st.Groups[j].Listen) == 0 {
			continue
		}
		var pids []int
		for _, w := range st.Workers {
			if w.Group == g.Name && w.PID > 0 {
				pids = append(pids, w.PID)
			}
		}
		n, err := Connections(pids, st.Groups[j].Listen)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		g.Connections = int32(min(n, v1alpha1.MaxAgentConnections))
	}
	return st, firstErr
}

// Connections counts the connections that the processes pids hold open
// and that were accepted on one of listen: TCP connections established on
// a listen address's port, unix stream connections accepted on its path.
// It reads /proc: each process's descriptors, and the connection tables of
// the agent's network namespace, which its workers share. A process it
// cannot read (gone, or another user's) counts none.
//
// It is how the agent reports a gateway's open connections, whatever
// language the gateway is written in.
func Connections(pids []int, listen []v1alpha1.ListenAddress) (int, error) {
	ports, paths := map[string]bool{}, map[string]bool{}
	for _, a := range listen {
		addr, err := sockets.Parse(a)
		if err != nil {
			return 0, err
		}
		if addr.Network == "unix" {
			paths[addr.Addr] = true
			continue
		}
		_, port, err := net.SplitHostPort(addr.Addr)
		if err != nil {
			return 0, fmt.Errorf("listen address %q: %w", a, err)
		}
		ports[port] = true
	}
	inodes := socketInodes(pids)
	if len(inodes) == 0 {
		return 0, nil
	}
	// The kernel writes a table a page at a time: a connection that
	// another opens or closes meanwhile can move a line from one page to
	// the next, which is then read twice or not at all. Lines are counted
	// once by inode, and the tables are read twice: a long connection is
	// missed only if both reads miss it.
	found := map[string]bool{}
	for range 2 {
		if err := findConnections(found, inodes, ports, paths); err != nil {
			return 0, err
		}
	}
	return len(found), nil
}

// findConnections adds to found the inodes among inodes of the TCP
// connections established on one of ports and of the unix connections
// accepted on one of paths.
func findConnections(found, inodes, ports, paths map[string]bool) error {
	if len(ports) > 0 {
		for _, table := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
			err := scanTable(table, func(f []string) {
				// sl local_address rem_address st ... inode: st 01 is
				// ESTABLISHED, the local address is HEXIP:HEXPORT.
				if len(f) < 10 || f[3] != "01" || !inodes[f[9]] {
					return
				}
				_, hexPort, _ := strings.Cut(f[1], ":")
				if port, err := strconv.ParseUint(hexPort, 16, 16); err == nil && ports[strconv.FormatUint(port, 10)] {
					found[f[9]] = true
				}
			})
			if err != nil {
				return err
			}
		}
	}
	if len(paths) > 0 {
		return scanTable("/proc/self/net/unix", func(f []string) {
			// Num RefCount Protocol Flags Type St Inode Path: St 03 is
			// connected; an accepted socket shows its listener's path.
			if len(f) >= 8 && f[5] == "03" && inodes[f[6]] && paths[f[7]] {
				found[f[6]] = true
			}
		})
	}
	return nil
}

// socketInodes returns the inodes of the sockets the processes pids hold.
func socketInodes(pids []int) map[string]bool {
	out := map[string]bool{}
	for _, pid := range pids {
		dir := "/proc/" + strconv.Itoa(pid) + "/fd"
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue // gone, or not ours to read
		}
		for _, e := range entries {
			target, err := os.Readlink(dir + "/" + e.Name())
			if err != nil {
				continue
			}
			if inode, ok := strings.CutPrefix(target, "socket:["); ok {
				out[strings.TrimSuffix(inode, "]")] = true
			}
		}
	}
	return out
}

// scanTable calls line with the fields of each line of the /proc table at
// path, after its header. A table the kernel does not have (no IPv6) has
// no lines.
func scanTable(path string, line func([]string)) error {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("counting connections: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for first := true; sc.Scan(); first = false {
		if !first {
			line(strings.Fields(sc.Text()))
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("counting connections: reading %s: %w", path, err)
	}
	return nil
}
