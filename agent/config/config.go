package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/softreload/softreload/api/v1alpha1"
)

// Config is a standalone agent's config file (pool.yaml).
type Config struct {
	// codeDir is the directory of the code, relative to the config file's
	// directory. Each reload snapshots it into a new revision. Default: the
	// config file's directory.
	CodeDir string `json:"codeDir,omitempty"`
	// stateDir keeps the revision snapshots. Default: a directory in the
	// system's temporary directory named after codeDir.
	StateDir string `json:"stateDir,omitempty"`
	// controlSocket is the unix socket that `agent reload|status|stop`
	// talk to. Default: a socket in the temporary directory named after
	// the config file.
	ControlSocket string `json:"controlSocket,omitempty"`
	// metricsAddress is the HOST:PORT of the Prometheus metrics and health
	// endpoint (/metrics, /healthz, /status). Empty: none.
	MetricsAddress string `json:"metricsAddress,omitempty"`
	// prefixOutput prefixes each line the workers write with
	// "[group/slot] ". Default true.
	PrefixOutput *bool `json:"prefixOutput,omitempty"`
	// keepRevisions is how many revision snapshots are kept (besides those
	// running). Default 5.
	KeepRevisions int `json:"keepRevisions,omitempty"`
	// groups are the worker groups, as in a WorkerPool.
	Groups []v1alpha1.WorkerGroup `json:"groups"`
	// strategy is how workers are replaced (replacement, maxSurge).
	Strategy v1alpha1.RolloutStrategy `json:"strategy,omitempty"`

	// File is the file Load read the config from (absolute); "" for a
	// config that Load did not read. It is not a field of the file.
	File string `json:"-"`
}

// Reread loads c's file again, for a reload: its groups and its strategy
// may change. A change of anything else needs a restart of the agent and
// is refused, with the field named.
func Reread(c *Config) (*Config, error) {
	if c.File == "" {
		return nil, fmt.Errorf("the config was not read from a file")
	}
	next, err := Load(c.File)
	if err != nil {
		return nil, err
	}
	if errs := ValidateChange(c, next); len(errs) > 0 {
		return nil, fmt.Errorf("%s: %w", c.File, errs.ToAggregate())
	}
	return next, nil
}

// ValidateChange says what next changes in cur that a running agent cannot
// apply: everything but the groups and the strategy.
func ValidateChange(cur, next *Config) field.ErrorList {
	var errs field.ErrorList
	same := func(name string, a, b any) {
		if a != b {
			errs = append(errs, field.Forbidden(field.NewPath(name), fmt.Sprintf("changed from %v to %v: that needs a restart of the agent", a, b)))
		}
	}
	same("codeDir", cur.CodeDir, next.CodeDir)
	same("stateDir", cur.StateDir, next.StateDir)
	same("controlSocket", cur.ControlSocket, next.ControlSocket)
	same("metricsAddress", cur.MetricsAddress, next.MetricsAddress)
	same("prefixOutput", *cur.PrefixOutput, *next.PrefixOutput)
	same("keepRevisions", cur.KeepRevisions, next.KeepRevisions)
	return errs
}

// maxSocketPath is the longest unix socket path Linux takes.
const maxSocketPath = 107

// Load reads, defaults and validates the config file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	c, err := Parse(data, filepath.Dir(abs))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if c.ControlSocket == "" {
		c.ControlSocket = DefaultControlSocket(abs)
	}
	c.File = abs
	return c, nil
}

// DefaultControlSocket is the control socket of the config file at path
// (absolute) when it names none.
func DefaultControlSocket(path string) string {
	return filepath.Join(os.TempDir(), "softreload-"+shortHash(path)+".sock")
}

func shortHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])[:12]
}

// Parse reads a config from data; relative paths are taken from baseDir.
// Unknown fields are refused.
func Parse(data []byte, baseDir string) (*Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return nil, fmt.Errorf("parsing the config: %w", err)
	}
	SetDefaults(&c, baseDir)
	if errs := Validate(&c); len(errs) > 0 {
		return nil, errs.ToAggregate()
	}
	return &c, nil
}

// SetDefaults fills in what c leaves unset.
func SetDefaults(c *Config, baseDir string) {
	if c.CodeDir == "" {
		c.CodeDir = baseDir
	} else if !filepath.IsAbs(c.CodeDir) {
		c.CodeDir = filepath.Join(baseDir, c.CodeDir)
	}
	if c.StateDir == "" {
		c.StateDir = filepath.Join(os.TempDir(), "softreload-revisions-"+shortHash(c.CodeDir))
	} else if !filepath.IsAbs(c.StateDir) {
		c.StateDir = filepath.Join(baseDir, c.StateDir)
	}
	if c.ControlSocket != "" && !filepath.IsAbs(c.ControlSocket) {
		c.ControlSocket = filepath.Join(baseDir, c.ControlSocket)
	}
	if c.PrefixOutput == nil {
		t := true
		c.PrefixOutput = &t
	}
	if c.KeepRevisions == 0 {
		c.KeepRevisions = 5
	}
	for i := range c.Groups {
		v1alpha1.SetGroupDefaults(&c.Groups[i])
	}
	v1alpha1.SetStrategyDefaults(&c.Strategy)
}

// Validate checks a defaulted config.
func Validate(c *Config) field.ErrorList {
	errs := v1alpha1.ValidateGroups(c.Groups, field.NewPath("groups"))
	errs = append(errs, v1alpha1.ValidateStrategy(&c.Strategy, field.NewPath("strategy"))...)
	if c.MetricsAddress != "" {
		host, port, err := net.SplitHostPort(c.MetricsAddress)
		if err != nil {
			errs = append(errs, field.Invalid(field.NewPath("metricsAddress"), c.MetricsAddress, "must be HOST:PORT"))
		} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			errs = append(errs, field.Invalid(field.NewPath("metricsAddress"), c.MetricsAddress, "the port must be from 0 to 65535"))
		} else if host != "" && net.ParseIP(host) == nil && host != "localhost" {
			errs = append(errs, field.Invalid(field.NewPath("metricsAddress"), c.MetricsAddress, "the host must be an IP address or localhost"))
		}
	}
	if len(c.ControlSocket) > maxSocketPath {
		errs = append(errs, field.TooLong(field.NewPath("controlSocket"), c.ControlSocket, maxSocketPath))
	}
	if c.KeepRevisions < 1 {
		errs = append(errs, field.Invalid(field.NewPath("keepRevisions"), c.KeepRevisions, "must be at least 1"))
	}
	return errs
}
