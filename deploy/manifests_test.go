package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Every flag compose.yaml passes to cmd/node and cmd/certs exists there,
// with a value where it takes one; the four nodes agree on --peers, each
// has the id of its own entry and a data volume of its own, and the
// certificates name the hosts the nodes are dialled at.
func TestComposeFlagsAndAgreement(t *testing.T) {
	flags := commandFlags(t)
	docs := readYAML[compose](t, "compose.yaml")
	if len(docs) != 1 {
		t.Fatalf("compose.yaml holds %d documents, want 1", len(docs))
	}
	c := docs[0]
	var (
		nodes   = map[int]map[string]string{} // id → flags
		certs   map[string]string
		peers   string
		volumes = map[string]string{} // data volume → service
	)
	for name, svc := range c.Services {
		invs := invocations("compose.yaml: service "+name, svc.Command)
		if len(invs) == 0 {
			t.Errorf("service %s runs neither twopc-node nor twopc-certs: %q", name, svc.Command)
		}
		for _, inv := range invs {
			vals, err := parseArgs(inv, flags[inv.bin])
			if err != nil {
				t.Error(err)
				continue
			}
			switch inv.bin {
			case "twopc-certs":
				certs = vals
			case "twopc-node":
				id, err := strconv.Atoi(vals["id"])
				if err != nil {
					t.Errorf("service %s: --id %q", name, vals["id"])
					continue
				}
				nodes[id] = vals
				if peers == "" {
					peers = vals["peers"]
				} else if vals["peers"] != peers {
					t.Errorf("service %s: --peers %q, but another node has %q", name, vals["peers"], peers)
				}
				if hosts := hostsOf(t, vals["peers"]); id >= len(hosts) || hosts[id] != svc.Hostname || svc.Hostname != name {
					t.Errorf("service %s (hostname %q) has --id %d: its entry in --peers must be its own name", name, svc.Hostname, id)
				}
				if _, ok := svc.DependsOn["certs"]; !ok || svc.DependsOn["certs"].Condition != "service_completed_successfully" {
					t.Errorf("service %s does not wait for the certs job to finish", name)
				}
				if !slices.Contains(svc.Volumes, "tls:"+vals["tls-dir"]+":ro") {
					t.Errorf("service %s: volumes %v do not mount tls read-only at --tls-dir %s", name, svc.Volumes, vals["tls-dir"])
				}
				for _, v := range svc.Volumes {
					if src, dst, _ := strings.Cut(v, ":"); dst == vals["data-dir"] {
						if other, dup := volumes[src]; dup {
							t.Errorf("services %s and %s share the data volume %s", other, name, src)
						}
						volumes[src] = name
					}
				}
				if want := "http://127.0.0.1:" + portOf(t, vals["http"]) + "/readyz"; !slices.Contains(svc.Healthcheck.Test, want) {
					t.Errorf("service %s: health check %q does not ask %s", name, svc.Healthcheck.Test, want)
				}
			}
		}
	}
	hosts := hostsOf(t, peers)
	if len(nodes) != len(hosts) || len(nodes) != 4 {
		t.Fatalf("%d node services for %d peers, want 4 of each", len(nodes), len(hosts))
	}
	if len(volumes) != len(nodes) {
		t.Errorf("%d data volumes for %d nodes: %v", len(volumes), len(nodes), volumes)
	}
	if certs == nil {
		t.Fatal("no service runs twopc-certs")
	}
	if certs["nodes"] != strconv.Itoa(len(hosts)) || certs["hosts"] != strings.Join(hosts, ",") {
		t.Errorf("certs --nodes %s --hosts %s, want %d and the peers' hosts %s", certs["nodes"], certs["hosts"], len(hosts), strings.Join(hosts, ","))
	}
	for name := range c.Services {
		for _, v := range c.Services[name].Volumes {
			if src, _, _ := strings.Cut(v, ":"); c.Volumes != nil {
				if _, ok := c.Volumes[src]; !ok {
					t.Errorf("service %s mounts volume %s, which compose.yaml does not declare", name, src)
				}
			}
		}
	}
}

// Every flag the Kubernetes manifests pass to cmd/node exists there; the
// StatefulSet's peers are its own pods under the headless Service, one per
// replica; readiness is /readyz and liveness /healthz on --http's port;
// each pod keeps its log on a volume of its own (volumeClaimTemplates) at
// --data-dir, and takes its certificates from a Secret.
func TestKubernetesManifests(t *testing.T) {
	flags := commandFlags(t)
	files, err := filepath.Glob(filepath.Join("k8s", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no k8s/*.yaml: %v", err)
	}
	var objs []k8sObject
	for _, f := range files {
		objs = append(objs, readYAML[k8sObject](t, f)...)
	}
	find := func(kind, name string) *k8sObject {
		for i := range objs {
			if objs[i].Kind == kind && (name == "" || objs[i].Metadata.Name == name) {
				return &objs[i]
			}
		}
		return nil
	}
	sts := find("StatefulSet", "")
	if sts == nil {
		t.Fatal("no StatefulSet in k8s/")
	}
	svc := find("Service", sts.Spec.ServiceName)
	if svc == nil {
		t.Fatalf("the StatefulSet's serviceName %q names no Service in k8s/", sts.Spec.ServiceName)
	}
	if svc.Spec.ClusterIP != "None" || !svc.Spec.PublishNotReadyAddresses {
		t.Errorf("Service %s: clusterIP %q publishNotReadyAddresses %v, want a headless Service publishing nodes before they are ready", svc.Metadata.Name, svc.Spec.ClusterIP, svc.Spec.PublishNotReadyAddresses)
	}
	if ns := sts.Metadata.Namespace; ns == "" || svc.Metadata.Namespace != ns || find("Namespace", ns) == nil {
		t.Errorf("StatefulSet in namespace %q, Service in %q: want both in one namespace declared in k8s/", ns, svc.Metadata.Namespace)
	}
	pod := sts.Spec.Template.Spec
	if !pod.SecurityContext.RunAsNonRoot || pod.SecurityContext.RunAsUser == 0 {
		t.Errorf("pods may run as root: %+v", pod.SecurityContext)
	}
	var node *container
	var nodeFlags map[string]string
	for i, c := range append(append([]container(nil), pod.InitContainers...), pod.Containers...) {
		argv := append(append([]string(nil), c.Command...), c.Args...)
		for _, inv := range invocations(fmt.Sprintf("StatefulSet %s: container %s", sts.Metadata.Name, c.Name), argv) {
			vals, err := parseArgs(inv, flags[inv.bin])
			if err != nil {
				t.Error(err)
				continue
			}
			if inv.bin == "twopc-node" && i >= len(pod.InitContainers) {
				c := c
				node, nodeFlags = &c, vals
			}
		}
	}
	if node == nil {
		t.Fatal("no container of the StatefulSet runs twopc-node")
	}
	if nodeFlags["id"] != "$(POD_INDEX)" {
		t.Errorf("--id %q, want the pod's index, $(POD_INDEX)", nodeFlags["id"])
	}
	hosts := hostsOf(t, nodeFlags["peers"])
	if len(hosts) != sts.Spec.Replicas {
		t.Errorf("%d peers for %d replicas", len(hosts), sts.Spec.Replicas)
	}
	for i, h := range hosts {
		if want := fmt.Sprintf("%s-%d.%s.%s.svc.cluster.local", sts.Metadata.Name, i, svc.Metadata.Name, sts.Metadata.Namespace); h != want {
			t.Errorf("peer %d is %s, want its pod's name %s", i, h, want)
		}
	}
	httpPort := portOf(t, nodeFlags["http"])
	portName := ""
	for _, p := range node.Ports {
		if strconv.Itoa(p.ContainerPort) == httpPort {
			portName = p.Name
		}
	}
	for _, pr := range []struct {
		what, path string
		p          *probe
	}{{"readinessProbe", "/readyz", node.ReadinessProbe}, {"livenessProbe", "/healthz", node.LivenessProbe}} {
		if pr.p == nil || pr.p.HTTPGet.Path != pr.path || (pr.p.HTTPGet.Port != httpPort && pr.p.HTTPGet.Port != portName) {
			t.Errorf("%s %+v, want GET %s on --http's port %s", pr.what, pr.p, pr.path, httpPort)
		}
	}
	mounts := map[string]string{} // path → volume
	for _, m := range node.VolumeMounts {
		mounts[m.MountPath] = m.Name
	}
	claims := map[string]bool{}
	for _, v := range sts.Spec.VolumeClaimTemplates {
		claims[v.Metadata.Name] = true
	}
	if !claims[mounts[nodeFlags["data-dir"]]] {
		t.Errorf("--data-dir %s is mounted from %q, not from a volumeClaimTemplate (%v)", nodeFlags["data-dir"], mounts[nodeFlags["data-dir"]], claims)
	}
	// The certificates: a Secret, copied by an init container into the
	// volume mounted at --tls-dir.
	secret := ""
	for _, v := range pod.Volumes {
		if v.Secret != nil {
			secret = v.Name
		}
	}
	if secret == "" || mounts[nodeFlags["tls-dir"]] == "" {
		t.Fatalf("no Secret volume (%q), or nothing mounted at --tls-dir %s", secret, nodeFlags["tls-dir"])
	}
	copied := false
	for _, c := range pod.InitContainers {
		reads, writes := false, false
		for _, m := range c.VolumeMounts {
			reads = reads || m.Name == secret
			writes = writes || m.Name == mounts[nodeFlags["tls-dir"]]
		}
		copied = copied || reads && writes
	}
	if !copied {
		t.Errorf("no init container copies the Secret %s into %s", secret, mounts[nodeFlags["tls-dir"]])
	}
}

// The Dockerfile builds the two commands the files run, static (CGO
// off), under the names they use, and the image runs as a user who is not
// root.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	for name, pkg := range binaries {
		build := regexp.MustCompile(`CGO_ENABLED=0 go build [^\n]*-o /out/` + regexp.QuoteMeta(name) + ` ` + regexp.QuoteMeta(pkg) + `\b`)
		if !build.MatchString(df) {
			t.Errorf("the Dockerfile does not build %s from %s with CGO_ENABLED=0", name, pkg)
		}
	}
	user := regexp.MustCompile(`(?m)^USER (\S+)`).FindAllStringSubmatch(df, -1)
	if len(user) == 0 {
		t.Fatal("the Dockerfile sets no USER: the image would run as root")
	}
	if u := user[len(user)-1][1]; u == "root" || strings.HasPrefix(u, "0:") || u == "0" {
		t.Errorf("the image runs as %s", u)
	}
	if !strings.Contains(df, `VOLUME ["/data"]`) {
		t.Error("the Dockerfile declares no /data volume")
	}
}

// The checks above would pass vacuously if the flag sets came back empty
// or the invocations were not found: they must find what is known to be
// there, and refuse what is not.
func TestFlagCheckerRefusesUnknownFlags(t *testing.T) {
	flags := commandFlags(t)
	for _, f := range []string{"id", "peers", "tls-dir", "data-dir", "http", "insecure"} {
		if _, ok := flags["twopc-node"][f]; !ok {
			t.Errorf("twopc-node's flags %v lack --%s", flags["twopc-node"], f)
		}
	}
	if flags["twopc-node"]["insecure"].takesValue || !flags["twopc-node"]["peers"].takesValue {
		t.Errorf("flag kinds misread: %+v", flags["twopc-node"])
	}
	for _, c := range []struct {
		argv []string
		want string
	}{
		{[]string{"twopc-node", "--id", "0", "--no-such-flag", "x"}, "has no flag --no-such-flag"},
		{[]string{"twopc-node", "--id"}, "--id needs a value"},
		{[]string{"twopc-node", "--insecure", "stray"}, `argument "stray" is not a flag`},
		{[]string{"sh", "-c", "test -f x || exec twopc-certs --dir /tls --nodes 4 --bogus"}, "has no flag --bogus"},
	} {
		invs := invocations("test", c.argv)
		if len(invs) != 1 {
			t.Fatalf("%q: %d invocations found, want 1", c.argv, len(invs))
		}
		if _, err := parseArgs(invs[0], flags[invs[0].bin]); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error saying %q", c.argv, err, c.want)
		}
	}
}
