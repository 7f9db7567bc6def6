package local

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
)

// The walkthrough's gateway speaks WebSocket with Python's websockets
// library, which is not in Python's standard library: a worker runs the
// python3 of the agent's PATH, and that one must have it.

// ErrNoWebsockets says that no python3 can import websockets.
var ErrNoWebsockets = errors.New("the walkthrough's gateway needs Python's websockets library, and no python3 here has it: " +
	"apt-get install python3-websockets (Debian's /usr/bin/python3), or pip install websockets for the python3 on PATH")

// PythonWithWebsockets returns a python3 that imports websockets: the one
// on PATH if it does, else Debian's /usr/bin/python3 (where apt-get
// install python3-websockets puts the library) if it does.
func PythonWithWebsockets() (string, error) {
	var candidates []string
	if p, err := exec.LookPath("python3"); err == nil {
		candidates = append(candidates, p)
	}
	candidates = append(candidates, "/usr/bin/python3")
	for _, p := range candidates {
		if exec.Command(p, "-c", "import websockets").Run() == nil {
			return p, nil
		}
	}
	return "", ErrNoWebsockets
}

// UsePythonWithWebsockets puts the directory of PythonWithWebsockets'
// python3 first in this process's PATH, which the agents it starts, and
// their workers, inherit: the walkthrough's pool runs python3 by name.
func UsePythonWithWebsockets() error {
	p, err := PythonWithWebsockets()
	if err != nil {
		return err
	}
	if found, err := exec.LookPath("python3"); err == nil && found == p {
		return nil
	}
	return os.Setenv("PATH", filepath.Dir(p)+string(os.PathListSeparator)+os.Getenv("PATH"))
}
