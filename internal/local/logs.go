package local

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// LogTails returns the last lines of every process's log that a cluster
// started in dir (Options.Dir) wrote, each under its file's name: what a
// failed test prints. It reads the files as they are, also once the
// cluster is stopped.
func LogTails(dir string, lines int) string {
	logs := filepath.Join(dir, "logs")
	entries, _ := os.ReadDir(logs)
	var b strings.Builder
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(logs, e.Name()))
		if err != nil {
			continue
		}
		tail := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(tail) > lines {
			tail = tail[len(tail)-lines:]
		}
		fmt.Fprintf(&b, "--- %s (last %d lines)\n%s\n", e.Name(), len(tail), strings.Join(tail, "\n"))
	}
	return b.String()
}
