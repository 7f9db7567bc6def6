package pod

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/softreload/softreload/internal/poolrevision"
)

// runningRecord is what the agent keeps in its code root of the revision
// its workers run, to serve it again after a restart.
type runningRecord struct {
	Name string            `json:"name"`
	Spec poolrevision.Spec `json:"spec"`
	Dir  string            `json:"dir"`
	Code string            `json:"code,omitempty"`
}

// runningFile is where the record is kept.
func (a *Agent) runningFile() string { return filepath.Join(a.opts.CodeRoot, "running.json") }

// saveRunning keeps rev as the revision the workers run, atomically.
func (a *Agent) saveRunning(rev Revision) error {
	data, err := json.Marshal(runningRecord(rev))
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(a.opts.CodeRoot, ".running-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), a.runningFile())
}

// loadRunning reads the revision the workers ran before a restart of the
// agent, if its code is still there.
func (a *Agent) loadRunning() (Revision, bool) {
	data, err := os.ReadFile(a.runningFile())
	if errors.Is(err, fs.ErrNotExist) {
		return Revision{}, false
	}
	var rec runningRecord
	if err == nil {
		err = json.Unmarshal(data, &rec)
	}
	if err == nil && rec.Name == "" {
		err = errors.New("it names no revision")
	}
	if err == nil {
		_, err = os.Stat(rec.Dir)
	}
	if err != nil {
		a.log.Info("Ignoring the record of the revision that ran before a restart", "file", a.runningFile(), "err", err)
		return Revision{}, false
	}
	return Revision(rec), true
}
