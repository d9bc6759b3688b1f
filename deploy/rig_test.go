package deploy

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"
)

// The deploy tests' rig: the commands' flag sets (from their -h output,
// built once per test binary), the invocations of them found in a
// container's command line, and the YAML files read into the few fields
// the tests look at.

// binaries maps the name a command has in the image (deploy/Dockerfile)
// to its package.
var binaries = map[string]string{
	"twopc-node":  "./cmd/node",
	"twopc-certs": "./cmd/certs",
}

// flagInfo is what a command's usage says of one flag.
type flagInfo struct {
	takesValue bool // "-name type": a value follows; "-name" alone: a bool
}

var (
	flagsOnce sync.Once
	flagSets  map[string]map[string]flagInfo
	flagsErr  error
)

// commandFlags builds every command of binaries and reads its flags from
// its -h output, once.
func commandFlags(t *testing.T) map[string]map[string]flagInfo {
	t.Helper()
	flagsOnce.Do(func() { flagSets, flagsErr = buildFlagSets() })
	if flagsErr != nil {
		t.Fatal(flagsErr)
	}
	return flagSets
}

func buildFlagSets() (map[string]map[string]flagInfo, error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("no go command to build the commands with: %w", err)
	}
	dir, err := os.MkdirTemp("", "twopc-deploy-bin-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	sets := map[string]map[string]flagInfo{}
	for name, pkg := range binaries {
		bin := filepath.Join(dir, name)
		build := exec.Command(goTool, "build", "-o", bin, pkg)
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
		// Each prints its usage on -h (cmd/certs exits 2 doing so): the
		// exit code says nothing here, the flags listed do.
		out, _ := exec.Command(bin, "-h").CombinedOutput()
		flags := parseUsage(string(out))
		if len(flags) == 0 {
			return nil, fmt.Errorf("%s -h lists no flags:\n%s", name, out)
		}
		sets[name] = flags
	}
	return sets, nil
}

// usageLine is a flag line of flag.PrintDefaults: "  -name" or
// "  -name type" (the usage text follows on the next line).
var usageLine = regexp.MustCompile(`^  -([A-Za-z0-9][A-Za-z0-9_.-]*)(?: ([A-Za-z0-9_]+))?`)

func parseUsage(usage string) map[string]flagInfo {
	flags := map[string]flagInfo{}
	for _, l := range strings.Split(usage, "\n") {
		if m := usageLine.FindStringSubmatch(l); m != nil {
			flags[m[1]] = flagInfo{takesValue: m[2] != ""}
		}
	}
	return flags
}

// moduleRoot is the nearest directory above the test's own with a go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// invocation is one run of a command of binaries in a deployment file.
type invocation struct {
	where string // which file, service or container
	bin   string // twopc-node or twopc-certs
	args  []string
}

// invocations finds the runs of our commands in a container's command
// line: the command itself, or commands in a "sh -c" script (split on
// blanks: the scripts here quote nothing).
func invocations(where string, argv []string) []invocation {
	if len(argv) >= 3 && (argv[0] == "sh" || argv[0] == "/bin/sh") && argv[1] == "-c" {
		return scriptInvocations(where, argv[2])
	}
	if len(argv) > 0 {
		if _, ok := binaries[filepath.Base(argv[0])]; ok {
			return []invocation{{where: where, bin: filepath.Base(argv[0]), args: argv[1:]}}
		}
	}
	return nil
}

func scriptInvocations(where, script string) []invocation {
	var out []invocation
	words := strings.Fields(script)
	for i := 0; i < len(words); i++ {
		if _, ok := binaries[filepath.Base(words[i])]; !ok {
			continue
		}
		inv := invocation{where: where, bin: filepath.Base(words[i])}
		for i++; i < len(words) && !strings.ContainsAny(words[i], ";&|"); i++ {
			inv.args = append(inv.args, words[i])
		}
		out = append(out, inv)
	}
	return out
}

// parseArgs checks args against the command's flags as its flag package
// would: each must be a known flag, with its value if it takes one, and
// nothing else (cmd/node refuses positional arguments). It returns each
// flag's value ("true" for a bool given alone).
func parseArgs(inv invocation, flags map[string]flagInfo) (map[string]string, error) {
	vals := map[string]string{}
	for i := 0; i < len(inv.args); i++ {
		a := inv.args[i]
		if !strings.HasPrefix(a, "-") || a == "-" || a == "--" {
			return nil, fmt.Errorf("%s: %s: argument %q is not a flag", inv.where, inv.bin, a)
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f, ok := flags[name]
		if !ok {
			return nil, fmt.Errorf("%s: %s has no flag --%s", inv.where, inv.bin, name)
		}
		switch {
		case hasVal:
		case !f.takesValue:
			val = "true"
		case i+1 < len(inv.args):
			i++
			val = inv.args[i]
		default:
			return nil, fmt.Errorf("%s: %s --%s needs a value", inv.where, inv.bin, name)
		}
		if _, dup := vals[name]; dup {
			return nil, fmt.Errorf("%s: %s --%s given twice", inv.where, inv.bin, name)
		}
		vals[name] = val
	}
	return vals, nil
}

// readYAML decodes every document of the file at path (relative to this
// directory) into a fresh T each.
func readYAML[T any](t *testing.T, path string) []T {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	var docs []T
	for {
		var d T
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		docs = append(docs, d)
	}
	return docs
}

// compose is the part of a compose file the tests read.
type compose struct {
	Services map[string]struct {
		Hostname  string   `yaml:"hostname"`
		Command   []string `yaml:"command"`
		Volumes   []string `yaml:"volumes"`
		DependsOn map[string]struct {
			Condition string `yaml:"condition"`
		} `yaml:"depends_on"`
		Healthcheck struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
	} `yaml:"services"`
	Volumes map[string]any `yaml:"volumes"`
}

// k8sObject is the part of a Kubernetes object the tests read.
type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name      string `yaml:"name"`
		Namespace string `yaml:"namespace"`
	} `yaml:"metadata"`
	Spec struct {
		// Service
		ClusterIP                string `yaml:"clusterIP"`
		PublishNotReadyAddresses bool   `yaml:"publishNotReadyAddresses"`
		Ports                    []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort string `yaml:"targetPort"`
		} `yaml:"ports"`
		// StatefulSet
		ServiceName string `yaml:"serviceName"`
		Replicas    int    `yaml:"replicas"`
		Template    struct {
			Spec podSpec `yaml:"spec"`
		} `yaml:"template"`
		VolumeClaimTemplates []struct {
			Metadata struct {
				Name string `yaml:"name"`
			} `yaml:"metadata"`
		} `yaml:"volumeClaimTemplates"`
	} `yaml:"spec"`
}

type podSpec struct {
	SecurityContext struct {
		RunAsNonRoot bool `yaml:"runAsNonRoot"`
		RunAsUser    int  `yaml:"runAsUser"`
	} `yaml:"securityContext"`
	InitContainers []container `yaml:"initContainers"`
	Containers     []container `yaml:"containers"`
	Volumes        []struct {
		Name   string `yaml:"name"`
		Secret *struct {
			SecretName string `yaml:"secretName"`
		} `yaml:"secret"`
		EmptyDir any `yaml:"emptyDir"`
	} `yaml:"volumes"`
}

type container struct {
	Name    string   `yaml:"name"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Ports   []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	VolumeMounts   []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

// hostsOf is the host of each host:port of a --peers list.
func hostsOf(t *testing.T, peers string) []string {
	t.Helper()
	var hosts []string
	for _, p := range strings.Split(peers, ",") {
		h, _, ok := strings.Cut(p, ":")
		if !ok {
			t.Fatalf("--peers entry %q is not host:port", p)
		}
		hosts = append(hosts, h)
	}
	return hosts
}

// portOf is the port of a host:port.
func portOf(t *testing.T, addr string) string {
	t.Helper()
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		t.Fatalf("%q is not host:port", addr)
	}
	return addr[i+1:]
}
