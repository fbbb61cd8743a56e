package deploy

import (
	"bytes"
	"encoding/json"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"
)

// envOnly are TENANTVAULT_* variables vaultd reads that no flag backs.
var envOnly = map[string]bool{
	"TENANTVAULT_ADMIN_TOKEN": true, // never a flag: flags show in ps
}

var (
	vaultdFlagsOnce sync.Once
	vaultdFlagsSet  map[string]bool
	vaultdFlagsErr  string
)

// vaultdFlags are the flags vaultd defines, from `vaultd -help` of the
// vaultd built from this tree.
func vaultdFlags(t *testing.T) map[string]bool {
	t.Helper()
	vaultdFlagsOnce.Do(func() {
		dir, err := os.MkdirTemp("", "deploy-vaultd")
		if err != nil {
			vaultdFlagsErr = err.Error()
			return
		}
		defer os.RemoveAll(dir)
		bin := filepath.Join(dir, "vaultd")
		if out, err := exec.Command("go", "build", "-o", bin, "../cmd/vaultd").CombinedOutput(); err != nil {
			vaultdFlagsErr = "go build ../cmd/vaultd: " + err.Error() + "\n" + string(out)
			return
		}
		cmd := exec.Command(bin, "-help")
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // no TENANTVAULT_* of the caller's
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			vaultdFlagsErr = "vaultd -help: " + err.Error() + "\n" + out.String()
			return
		}
		vaultdFlagsSet = map[string]bool{}
		for _, m := range regexp.MustCompile(`(?m)^  -([a-z0-9][a-z0-9-]*)`).FindAllStringSubmatch(out.String(), -1) {
			vaultdFlagsSet[m[1]] = true
		}
	})
	if vaultdFlagsErr != "" {
		t.Fatal(vaultdFlagsErr)
	}
	if !vaultdFlagsSet["brokers"] || !vaultdFlagsSet["data-dir"] || len(vaultdFlagsSet) < 20 {
		t.Fatalf("read %d flags from vaultd -help (%v): the parse is wrong", len(vaultdFlagsSet), vaultdFlagsSet)
	}
	return vaultdFlagsSet
}

// envFlagName is the flag whose environment variable is name
// (TENANTVAULT_KAFKA_SASL_USER: kafka-sasl-user), or "".
func envFlagName(name string) string {
	s, ok := strings.CutPrefix(name, "TENANTVAULT_")
	if !ok {
		return ""
	}
	return strings.ReplaceAll(strings.ToLower(s), "_", "-")
}

// vaultdUse is how one vaultd in a deploy file is configured.
type vaultdUse struct {
	where string
	args  []string // the command line after the binary
	env   []string // names of the environment variables set
}

// checkVaultdUse reports every flag or TENANTVAULT_* variable of u that
// vaultd does not define, and returns the flags given, name → value.
func checkVaultdUse(t *testing.T, u vaultdUse) map[string]string {
	t.Helper()
	defined := vaultdFlags(t)
	flags := map[string]string{}
	for _, a := range u.args {
		name, ok := strings.CutPrefix(a, "--")
		if !ok {
			t.Errorf("%s: argument %q is not a --flag=value (vaultd takes no arguments)", u.where, a)
			continue
		}
		name, value, ok := strings.Cut(name, "=")
		if !ok {
			t.Errorf("%s: write %q as --%s=value (one list item per flag)", u.where, a, name)
		}
		if _, dup := flags[name]; dup {
			t.Errorf("%s: --%s given twice", u.where, name)
		}
		flags[name] = value
		if !defined[name] {
			t.Errorf("%s: vaultd has no flag --%s", u.where, name)
		}
	}
	for _, e := range u.env {
		name := envFlagName(e)
		if name == "" || envOnly[e] {
			continue
		}
		if !defined[name] {
			t.Errorf("%s: %s names no vaultd flag (--%s)", u.where, e, name)
		}
		if _, both := flags[name]; both {
			t.Errorf("%s: both %s and --%s are set (the flag wins; keep one)", u.where, e, name)
		}
	}
	return flags
}

// TestComposeVaultdFlags: every flag and TENANTVAULT_* variable the compose
// files give vaultd is one vaultd defines.
func TestComposeVaultdFlags(t *testing.T) {
	for _, f := range composeFiles {
		c := mustReadComposeFile(t, f)
		n := 0
		for name, s := range c.Services {
			if !s.isVaultd() {
				continue
			}
			n++
			checkVaultdUse(t, vaultdUse{where: f + " " + name, args: s.Command, env: mapKeys(s.Environment)})
		}
		if n == 0 {
			t.Errorf("%s has no vaultd service", f)
		}
	}
}

// clusterCompose is what the tests read of cluster/compose.yaml.
type clusterCompose struct {
	Services map[string]clusterService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
	Networks map[string]struct {
		Internal bool `yaml:"internal"`
	} `yaml:"networks"`
}

type clusterService struct {
	Image       string                                `yaml:"image"`
	Build       *struct{ Context, Dockerfile string } `yaml:"build"`
	Command     []string                              `yaml:"command"`
	Environment map[string]string                     `yaml:"environment"`
	Volumes     []string                              `yaml:"volumes"`
	NetworkMode string                                `yaml:"network_mode"`
	Networks    map[string]*struct {
		Aliases []string `yaml:"aliases"`
	} `yaml:"networks"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

func (s clusterService) isVaultd() bool {
	return s.Build != nil && s.Build.Dockerfile == "deploy/Dockerfile"
}

func mustReadComposeFile(t *testing.T, name string) clusterCompose {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var c clusterCompose
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return c
}

func mapKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestClusterCompose: cluster/compose.yaml is three vaultd nodes, each with
// its own node id, address, data volume and a per-tenant KMS master key,
// on three KRaft brokers that replicate every topic three times and
// acknowledge a write with two.
func TestClusterCompose(t *testing.T) {
	const file = "cluster/compose.yaml"
	c := mustReadComposeFile(t, file)

	// Kafka.
	var kafkas []string
	internal := map[string]string{} // broker service → its INTERNAL advertised address
	nodeIDs := map[string]string{}
	for name, s := range c.Services {
		if !strings.HasPrefix(s.Image, "apache/kafka:") || s.NetworkMode != "" {
			continue
		}
		kafkas = append(kafkas, name)
		env := s.Environment
		for k, want := range map[string]string{
			"KAFKA_PROCESS_ROLES":                            "broker,controller",
			"KAFKA_DEFAULT_REPLICATION_FACTOR":               "3",
			"KAFKA_MIN_INSYNC_REPLICAS":                      "2",
			"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR":         "3",
			"KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "3",
			"KAFKA_TRANSACTION_STATE_LOG_MIN_ISR":            "2",
			"KAFKA_AUTO_CREATE_TOPICS_ENABLE":                "false",
			"KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND":           "false",
		} {
			if env[k] != want {
				t.Errorf("%s: %s = %q, want %q", name, k, env[k], want)
			}
		}
		if env["CLUSTER_ID"] == "" {
			t.Errorf("%s: no CLUSTER_ID (the nodes must format with the same one)", name)
		}
		nodeIDs[name] = env["KAFKA_NODE_ID"]
		protos := listenerMap(env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"])
		for l, p := range protos {
			if p == "PLAINTEXT" && l != env["KAFKA_INTER_BROKER_LISTENER_NAME"] && l != env["KAFKA_CONTROLLER_LISTENER_NAMES"] {
				t.Errorf("%s: client listener %s is PLAINTEXT, want SASL", name, l)
			}
		}
		// The PLAINTEXT listeners are bound to the internal peers network.
		for _, l := range strings.Split(env["KAFKA_LISTENERS"], ",") {
			lname, addr, _ := strings.Cut(l, "://")
			if protos[lname] != "PLAINTEXT" {
				continue
			}
			host, _, _ := net.SplitHostPort(addr)
			if !c.isInternalAlias(s, host) {
				t.Errorf("%s: PLAINTEXT listener %s binds %q, not an alias on an internal network", name, lname, host)
			}
		}
		for _, l := range strings.Split(env["KAFKA_ADVERTISED_LISTENERS"], ",") {
			if a, ok := strings.CutPrefix(l, "INTERNAL://"); ok {
				internal[name] = a
			}
		}
		if c.namedVolume(s.Volumes, env["KAFKA_LOG_DIRS"]) == "" {
			t.Errorf("%s: log dir %s is in no named volume", name, env["KAFKA_LOG_DIRS"])
		}
	}
	slices.Sort(kafkas)
	if len(kafkas) != 3 {
		t.Fatalf("%s has brokers %v, want 3", file, kafkas)
	}
	var voters []string
	for _, k := range kafkas {
		s := c.Services[k]
		host := ""
		for _, l := range strings.Split(s.Environment["KAFKA_LISTENERS"], ",") {
			if a, ok := strings.CutPrefix(l, s.Environment["KAFKA_CONTROLLER_LISTENER_NAMES"]+"://"); ok {
				host = a
			}
		}
		voters = append(voters, nodeIDs[k]+"@"+host)
	}
	for _, k := range kafkas {
		if got := c.Services[k].Environment["KAFKA_CONTROLLER_QUORUM_VOTERS"]; got != strings.Join(voters, ",") {
			t.Errorf("%s: KAFKA_CONTROLLER_QUORUM_VOTERS = %q, want the three controllers %q", k, got, strings.Join(voters, ","))
		}
	}

	// vaultd.
	var brokers []string
	for _, k := range kafkas {
		brokers = append(brokers, internal[k])
	}
	var nodes []string
	volumes := map[string]string{}
	for name, s := range c.Services {
		if !s.isVaultd() {
			continue
		}
		nodes = append(nodes, name)
		flags := checkVaultdUse(t, vaultdUse{where: file + " " + name, args: s.Command, env: mapKeys(s.Environment)})
		if got := strings.Split(flags["brokers"], ","); !slices.Equal(sorted(got), sorted(brokers)) {
			t.Errorf("%s: --brokers=%s, want every broker's INTERNAL listener %v", name, flags["brokers"], brokers)
		}
		if flags["node-id"] != name {
			t.Errorf("%s: --node-id=%q, want the service name", name, flags["node-id"])
		}
		_, port, _ := net.SplitHostPort(s.Environment["TENANTVAULT_HTTP_ADDR"])
		if want := "http://" + name + ":" + port; flags["advertise-addr"] != want {
			t.Errorf("%s: --advertise-addr=%q, want %q (its name on the compose network, its TENANTVAULT_HTTP_ADDR port)", name, flags["advertise-addr"], want)
		}
		checkClusterMasterKey(t, file+" "+name, flags["master-key"])
		v := c.namedVolume(s.Volumes, flags["data-dir"])
		if v == "" {
			t.Errorf("%s: --data-dir=%q is in no named volume", name, flags["data-dir"])
		} else if other, ok := volumes[v]; ok {
			t.Errorf("%s and %s share the data volume %s: each node keeps its own store", name, other, v)
		}
		volumes[v] = name
		if s.Healthcheck == nil || len(s.Healthcheck.Test) < 3 || s.Healthcheck.Test[0] != "CMD" || s.Healthcheck.Test[2] != "healthcheck" {
			t.Errorf("%s: healthcheck %v, want [CMD vaultd healthcheck ...]", name, s.Healthcheck)
		}
		if s.Environment["TENANTVAULT_ADMIN_TOKEN"] == "" {
			t.Errorf("%s: no TENANTVAULT_ADMIN_TOKEN: each node would make its own admin token", name)
		}
	}
	if len(nodes) != 3 {
		t.Errorf("%s has vaultd nodes %v, want 3", file, nodes)
	}
}

// checkClusterMasterKey: a node of a cluster uses a KMS key per tenant,
// never a local:// key (each node would have its own).
func checkClusterMasterKey(t *testing.T, where, uri string) {
	t.Helper()
	if !strings.Contains(uri, "{tenant}") {
		t.Errorf("%s: --master-key=%q has no {tenant}: cluster mode needs a KMS key per tenant", where, uri)
	}
	if !strings.HasPrefix(uri, "hcvault://") && !strings.HasPrefix(uri, "aws-kms://") && !strings.HasPrefix(uri, "gcp-kms://") {
		t.Errorf("%s: --master-key=%q is not a KMS URI", where, uri)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func listenerMap(s string) map[string]string {
	m := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if k, v, ok := strings.Cut(kv, ":"); ok {
			m[k] = v
		}
	}
	return m
}

// isInternalAlias: host is an alias of s on a network marked internal.
func (c clusterCompose) isInternalAlias(s clusterService, host string) bool {
	for n, cfg := range s.Networks {
		if cfg != nil && c.Networks[n].Internal && slices.Contains(cfg.Aliases, host) {
			return true
		}
	}
	return false
}

func (c clusterCompose) namedVolume(mounts []string, target string) string {
	for _, v := range mounts {
		parts := strings.Split(v, ":")
		if len(parts) < 2 || filepath.Clean(parts[1]) != filepath.Clean(target) {
			continue
		}
		if _, ok := c.Volumes[parts[0]]; ok {
			return parts[0]
		}
	}
	return ""
}

// The parts of the Kubernetes objects the tests read (the schemas check
// the rest).
type k8sObject struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec json.RawMessage `json:"spec"`
}

type statefulSetSpec struct {
	Replicas    int    `json:"replicas"`
	ServiceName string `json:"serviceName"`
	Selector    struct {
		MatchLabels map[string]string `json:"matchLabels"`
	} `json:"selector"`
	Template struct {
		Metadata struct {
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
		Spec struct {
			EnableServiceLinks           *bool `json:"enableServiceLinks"`
			AutomountServiceAccountToken *bool `json:"automountServiceAccountToken"`
			SecurityContext              struct {
				RunAsNonRoot *bool `json:"runAsNonRoot"`
				RunAsUser    *int  `json:"runAsUser"`
				FSGroup      *int  `json:"fsGroup"`
			} `json:"securityContext"`
			Containers []container `json:"containers"`
			Volumes    []struct {
				Name   string `json:"name"`
				Secret *struct {
					SecretName string `json:"secretName"`
				} `json:"secret"`
			} `json:"volumes"`
		} `json:"spec"`
	} `json:"template"`
	VolumeClaimTemplates []struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
	} `json:"volumeClaimTemplates"`
}

type container struct {
	Name  string   `json:"name"`
	Args  []string `json:"args"`
	Env   []envVar `json:"env"`
	Ports []struct {
		Name          string `json:"name"`
		ContainerPort int    `json:"containerPort"`
	} `json:"ports"`
	ReadinessProbe *probe `json:"readinessProbe"`
	LivenessProbe  *probe `json:"livenessProbe"`
	StartupProbe   *probe `json:"startupProbe"`
	Resources      struct {
		Requests map[string]string `json:"requests"`
	} `json:"resources"`
	SecurityContext struct {
		RunAsNonRoot             *bool `json:"runAsNonRoot"`
		ReadOnlyRootFilesystem   *bool `json:"readOnlyRootFilesystem"`
		AllowPrivilegeEscalation *bool `json:"allowPrivilegeEscalation"`
	} `json:"securityContext"`
	VolumeMounts []struct {
		Name      string `json:"name"`
		MountPath string `json:"mountPath"`
	} `json:"volumeMounts"`
}

type envVar struct {
	Name      string `json:"name"`
	Value     string `json:"value"`
	ValueFrom *struct {
		FieldRef *struct {
			FieldPath string `json:"fieldPath"`
		} `json:"fieldRef"`
		SecretKeyRef *struct {
			Name string `json:"name"`
			Key  string `json:"key"`
		} `json:"secretKeyRef"`
	} `json:"valueFrom"`
}

type probe struct {
	HTTPGet *struct {
		Path string `json:"path"`
		Port any    `json:"port"`
	} `json:"httpGet"`
}

type serviceSpec struct {
	ClusterIP                string            `json:"clusterIP"`
	PublishNotReadyAddresses bool              `json:"publishNotReadyAddresses"`
	Selector                 map[string]string `json:"selector"`
	Ports                    []struct {
		Port       int `json:"port"`
		TargetPort any `json:"targetPort"`
	} `json:"ports"`
}

type pdbSpec struct {
	MinAvailable   any `json:"minAvailable"`
	MaxUnavailable any `json:"maxUnavailable"`
	Selector       struct {
		MatchLabels map[string]string `json:"matchLabels"`
	} `json:"selector"`
}

// k8sObjects are the manifests' objects by kind.
func k8sObjects(t *testing.T) map[string][]k8sObject {
	t.Helper()
	out := map[string][]k8sObject{}
	for name, docs := range k8sManifests(t) {
		for _, d := range docs {
			b, err := json.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			var o k8sObject
			if err := json.Unmarshal(b, &o); err != nil {
				t.Fatalf("k8s/%s: %v", name, err)
			}
			out[o.Kind] = append(out[o.Kind], o)
		}
	}
	return out
}

func mustSpec(t *testing.T, o k8sObject, v any) {
	t.Helper()
	if err := json.Unmarshal(o.Spec, v); err != nil {
		t.Fatalf("%s %s: %v", o.Kind, o.Metadata.Name, err)
	}
}

// apiPaths are the paths the HTTP API documents (its OpenAPI file).
func apiPaths(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../vault/httpapi/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for p := range doc.Paths {
		out[p] = true
	}
	return out
}

// TestK8sStatefulSet: the StatefulSet is three vaultd nodes, each named by
// its pod, reachable at its pod's DNS name under the headless Service,
// with a PVC of its own, probes on the API's health endpoints, and no
// root, no writable root file system, no service links.
func TestK8sStatefulSet(t *testing.T) {
	objs := k8sObjects(t)
	if len(objs["StatefulSet"]) != 1 {
		t.Fatalf("k8s/ has %d StatefulSets, want 1", len(objs["StatefulSet"]))
	}
	sts := objs["StatefulSet"][0]
	var spec statefulSetSpec
	mustSpec(t, sts, &spec)
	pod := spec.Template.Spec
	if spec.Replicas != 3 {
		t.Errorf("replicas = %d, want 3", spec.Replicas)
	}
	for k, v := range spec.Selector.MatchLabels {
		if spec.Template.Metadata.Labels[k] != v {
			t.Errorf("the selector's %s=%s is not on the pod template", k, v)
		}
	}

	// The headless Service governs the pods' DNS names.
	var headless *serviceSpec
	for _, o := range objs["Service"] {
		var s serviceSpec
		mustSpec(t, o, &s)
		if o.Metadata.Name == spec.ServiceName {
			headless = &s
		}
		if len(s.Selector) == 0 {
			t.Errorf("Service %s has no selector", o.Metadata.Name)
		}
		for k, v := range s.Selector {
			if spec.Template.Metadata.Labels[k] != v {
				t.Errorf("Service %s selects %s=%s, which the pods do not have", o.Metadata.Name, k, v)
			}
		}
	}
	if headless == nil {
		t.Fatalf("serviceName %q is no Service of k8s/", spec.ServiceName)
	}
	if headless.ClusterIP != "None" {
		t.Errorf("Service %s has clusterIP %q, want None (headless)", spec.ServiceName, headless.ClusterIP)
	}
	if len(objs["Service"]) < 2 {
		t.Errorf("k8s/ has %d Services, want the headless one and one for clients", len(objs["Service"]))
	}
	if len(objs["PodDisruptionBudget"]) != 1 {
		t.Errorf("k8s/ has %d PodDisruptionBudgets, want 1", len(objs["PodDisruptionBudget"]))
	}
	for _, o := range objs["PodDisruptionBudget"] {
		var p pdbSpec
		mustSpec(t, o, &p)
		if p.MinAvailable == nil && p.MaxUnavailable == nil {
			t.Errorf("PodDisruptionBudget %s sets neither minAvailable nor maxUnavailable", o.Metadata.Name)
		}
		for k, v := range p.Selector.MatchLabels {
			if spec.Template.Metadata.Labels[k] != v {
				t.Errorf("PodDisruptionBudget %s selects %s=%s, which the pods do not have", o.Metadata.Name, k, v)
			}
		}
	}

	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		t.Error("enableServiceLinks is not false: the Service tenantvault would put TENANTVAULT_SERVICE_HOST, TENANTVAULT_PORT, ... into vaultd's configuration namespace")
	}
	if pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
		t.Error("the pod's securityContext.runAsNonRoot is not true")
	}
	if pod.SecurityContext.RunAsUser == nil || *pod.SecurityContext.RunAsUser != 65532 || pod.SecurityContext.FSGroup == nil || *pod.SecurityContext.FSGroup != 65532 {
		t.Error("the pod does not run as, and own its volumes as, 65532 (the image's nonroot)")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("the pod has %d containers, want 1", len(pod.Containers))
	}
	ctr := pod.Containers[0]
	env := map[string]envVar{}
	var envNames []string
	for _, e := range ctr.Env {
		env[e.Name] = e
		envNames = append(envNames, e.Name)
	}
	flags := checkVaultdUse(t, vaultdUse{where: "k8s StatefulSet", args: ctr.Args, env: envNames})

	// $(VAR) in args expands only variables the container declares (before
	// the kubelet gets to them a missing one stays literally "$(VAR)").
	for _, a := range ctr.Args {
		for _, m := range regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`).FindAllStringSubmatch(a, -1) {
			if _, ok := env[m[1]]; !ok {
				t.Errorf("argument %q uses $(%s), which the container does not declare", a, m[1])
			}
		}
	}
	fieldRef := func(name, path string) {
		t.Helper()
		e, ok := env[name]
		if !ok || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != path {
			t.Errorf("env %s is not the downward API's %s", name, path)
		}
	}
	fieldRef("POD_NAME", "metadata.name")
	fieldRef("NAMESPACE", "metadata.namespace")
	if flags["node-id"] != "$(POD_NAME)" {
		t.Errorf("--node-id=%q, want $(POD_NAME)", flags["node-id"])
	}
	port := 0
	for _, p := range ctr.Ports {
		if p.Name == "http" {
			port = p.ContainerPort
		}
	}
	if _, p, _ := net.SplitHostPort(env["TENANTVAULT_HTTP_ADDR"].Value); p != strconv.Itoa(port) || port == 0 {
		t.Errorf("TENANTVAULT_HTTP_ADDR %q does not listen on the http containerPort %d", env["TENANTVAULT_HTTP_ADDR"].Value, port)
	}
	want := "http://$(POD_NAME)." + spec.ServiceName + ".$(NAMESPACE).svc:" + strconv.Itoa(port)
	if flags["advertise-addr"] != want {
		t.Errorf("--advertise-addr=%q, want %q", flags["advertise-addr"], want)
	}
	if u, err := url.Parse(strings.NewReplacer("$(POD_NAME)", "tenantvault-0", "$(NAMESPACE)", "ns").Replace(flags["advertise-addr"])); err != nil || u.Scheme != "http" || u.Port() == "" {
		t.Errorf("--advertise-addr=%q is not a URL with a port once expanded (%v)", flags["advertise-addr"], err)
	}
	if flags["brokers"] == "" {
		t.Error("no --brokers: a cluster needs a real Kafka")
	}
	checkClusterMasterKey(t, "k8s StatefulSet", flags["master-key"])

	// The data dir is on the node's own PVC.
	claims := map[string]bool{}
	for _, c := range spec.VolumeClaimTemplates {
		claims[c.Metadata.Name] = true
	}
	dataDir := flags["data-dir"]
	onClaim := false
	for _, m := range ctr.VolumeMounts {
		if claims[m.Name] && (dataDir == m.MountPath || strings.HasPrefix(dataDir, strings.TrimSuffix(m.MountPath, "/")+"/")) {
			onClaim = true
		}
	}
	if dataDir == "" || !onClaim {
		t.Errorf("--data-dir=%q is on no volumeClaimTemplate's mount", dataDir)
	}

	// Secrets: the admin token (the same on every node), the Kafka password.
	if e := env["TENANTVAULT_ADMIN_TOKEN"]; e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
		t.Error("TENANTVAULT_ADMIN_TOKEN is not from a Secret: each node would make its own admin token")
	}
	pw := flags["kafka-sasl-password-file"]
	fromSecret := false
	for _, m := range ctr.VolumeMounts {
		for _, v := range pod.Volumes {
			if v.Name == m.Name && v.Secret != nil && strings.HasPrefix(pw, strings.TrimSuffix(m.MountPath, "/")+"/") {
				fromSecret = true
			}
		}
	}
	if !fromSecret {
		t.Errorf("--kafka-sasl-password-file=%q is in no Secret volume", pw)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range referencedSecrets(spec) {
		if !bytes.Contains(readme, []byte(name)) {
			t.Errorf("the StatefulSet uses Secret %s, which README.md does not say how to create", name)
		}
	}

	// Probes on the API's own health endpoints.
	paths := apiPaths(t)
	for _, p := range []struct {
		name string
		pr   *probe
		want string
	}{
		{"readinessProbe", ctr.ReadinessProbe, "/readyz"},
		{"livenessProbe", ctr.LivenessProbe, "/healthz"},
	} {
		if p.pr == nil || p.pr.HTTPGet == nil {
			t.Errorf("no %s httpGet", p.name)
			continue
		}
		if p.pr.HTTPGet.Path != p.want || !paths[p.want] {
			t.Errorf("%s asks %s, want %s (in the API: %v)", p.name, p.pr.HTTPGet.Path, p.want, paths[p.want])
		}
		if p.pr.HTTPGet.Port != "http" && p.pr.HTTPGet.Port != float64(port) {
			t.Errorf("%s asks port %v, not the API's", p.name, p.pr.HTTPGet.Port)
		}
	}
	if len(ctr.Resources.Requests) == 0 {
		t.Error("the container requests no resources")
	}
	sc := ctr.SecurityContext
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("the container's securityContext is %+v, want runAsNonRoot, readOnlyRootFilesystem and no privilege escalation", sc)
	}
}

// referencedSecrets are the names of the Secrets the pod template uses.
func referencedSecrets(spec statefulSetSpec) []string {
	var out []string
	for _, c := range spec.Template.Spec.Containers {
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				out = append(out, e.ValueFrom.SecretKeyRef.Name)
			}
		}
	}
	for _, v := range spec.Template.Spec.Volumes {
		if v.Secret != nil {
			out = append(out, v.Secret.SecretName)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
