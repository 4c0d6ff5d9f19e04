package k8s

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// object is one decoded manifest document.
type object struct {
	file string
	kind string
	name string
	obj  any
}

// decode strictly decodes every document of every .yaml file in this
// directory into its Kubernetes API type: an unknown field, a misspelt one,
// a wrong type or an invalid quantity is an error.
func decode(t *testing.T) []object {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	var objs []object
	for _, f := range files {
		if f == "kustomization.yaml" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range splitDocs(b) {
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Fatalf("%s #%d: %v", f, i, err)
			}
			var obj any
			switch tm.APIVersion + " " + tm.Kind {
			case "v1 Namespace":
				obj = &corev1.Namespace{}
			case "v1 Secret":
				obj = &corev1.Secret{}
			case "v1 Service":
				obj = &corev1.Service{}
			case "apps/v1 Deployment":
				obj = &appsv1.Deployment{}
			case "batch/v1 Job":
				obj = &batchv1.Job{}
			default:
				t.Fatalf("%s #%d: unexpected %s %s", f, i, tm.APIVersion, tm.Kind)
			}
			if err := yaml.UnmarshalStrict(doc, obj); err != nil {
				t.Fatalf("%s #%d (%s): %v", f, i, tm.Kind, err)
			}
			name := obj.(metav1.Object).GetName()
			if name == "" {
				t.Errorf("%s #%d: %s without a name", f, i, tm.Kind)
			}
			objs = append(objs, object{file: f, kind: tm.Kind, name: name, obj: obj})
		}
	}
	return objs
}

func splitDocs(b []byte) [][]byte {
	var docs [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
		if strings.TrimSpace(regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(d, "")) != "" {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

func find[T any](objs []object, kind, name string) *T {
	for _, o := range objs {
		if o.kind == kind && o.name == name {
			return o.obj.(*T)
		}
	}
	return nil
}

// kustomization is the part of kustomize's Kustomization that we use.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace"`
	Resources  []string `json:"resources"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
}

func TestKustomization(t *testing.T) {
	b, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(b, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" || k.Namespace != "picluster" {
		t.Errorf("kustomization.yaml: %s %s namespace %q", k.APIVersion, k.Kind, k.Namespace)
	}
	for _, r := range k.Resources {
		if _, err := os.Stat(r); err != nil {
			t.Errorf("kustomization.yaml lists %s: %v", r, err)
		}
	}
	for _, want := range []string{"namespace.yaml", "secrets.yaml", "redis.yaml", "collector.yaml", "workers.yaml"} {
		if !slices.Contains(k.Resources, want) {
			t.Errorf("kustomization.yaml does not list %s", want)
		}
	}
	if len(k.Images) != 1 || k.Images[0].Name != "picluster" {
		t.Errorf("kustomization.yaml: images %+v, want one rewrite of picluster", k.Images)
	}
}

// pods are the pod templates of the workloads, by workload.
func pods(objs []object) map[string]*corev1.PodTemplateSpec {
	m := map[string]*corev1.PodTemplateSpec{}
	for _, o := range objs {
		switch w := o.obj.(type) {
		case *appsv1.Deployment:
			m[o.kind+"/"+o.name] = &w.Spec.Template
		case *batchv1.Job:
			m[o.kind+"/"+o.name] = &w.Spec.Template
		}
	}
	return m
}

// Every workload: resource requests, a non-root security context, secrets
// that exist; picluster's own: a readiness probe on /healthz at the port
// --http serves, and Prometheus annotations naming that port.
func TestWorkloads(t *testing.T) {
	objs := decode(t)
	ps := pods(objs)
	for _, want := range []string{"Deployment/redis", "Deployment/picluster-collector", "Deployment/picluster-worker", "Job/picluster-workers"} {
		if ps[want] == nil {
			t.Errorf("no %s", want)
		}
	}
	for name, p := range ps {
		sc := p.Spec.SecurityContext
		if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
			t.Errorf("%s: want a pod securityContext with runAsNonRoot and a non-zero runAsUser", name)
		}
		if sc != nil && (sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault) {
			t.Errorf("%s: want seccompProfile RuntimeDefault (pod security standard restricted)", name)
		}
		for _, c := range p.Spec.Containers {
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if q, ok := c.Resources.Requests[r]; !ok || q.IsZero() {
					t.Errorf("%s/%s: no %s request", name, c.Name, r)
				}
			}
			if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
				t.Errorf("%s/%s: no memory limit", name, c.Name)
			}
			csc := c.SecurityContext
			if csc == nil || csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation ||
				csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL") {
				t.Errorf("%s/%s: want allowPrivilegeEscalation false and capabilities drop ALL", name, c.Name)
			}
			if c.ReadinessProbe == nil {
				t.Errorf("%s/%s: no readiness probe", name, c.Name)
			}
			checkSecretRefs(t, objs, name, p, c)
			if c.Image == "picluster" {
				checkPicluster(t, name, p, c)
			}
		}
	}
}

// checkPicluster checks a picluster container: its probes and annotations
// agree with its --http port.
func checkPicluster(t *testing.T, name string, p *corev1.PodTemplateSpec, c corev1.Container) {
	t.Helper()
	if len(c.Args) == 0 || (c.Args[0] != "worker" && c.Args[0] != "collector") {
		t.Fatalf("%s/%s: args %q, want a picluster worker or collector", name, c.Name, c.Args)
	}
	i := slices.Index(c.Args, "--http")
	if i < 0 || i+1 >= len(c.Args) {
		t.Fatalf("%s/%s: no --http: no /healthz for the probes, no /metrics", name, c.Name)
	}
	_, portStr, ok := strings.Cut(c.Args[i+1], ":")
	port, err := strconv.Atoi(portStr)
	if !ok || err != nil || !strings.HasPrefix(c.Args[i+1], "0.0.0.0:") {
		t.Fatalf("%s/%s: --http %q, want 0.0.0.0:PORT (the default binds loopback, out of the kubelet's reach)", name, c.Name, c.Args[i+1])
	}
	var named string
	for _, cp := range c.Ports {
		if cp.ContainerPort == int32(port) {
			named = cp.Name
		}
	}
	if named == "" {
		t.Errorf("%s/%s: --http port %d is not a container port", name, c.Name, port)
	}
	for what, pr := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if pr == nil {
			continue
		}
		g := pr.HTTPGet
		if g == nil || g.Path != "/healthz" || (g.Port.String() != named && g.Port.IntValue() != port) {
			t.Errorf("%s/%s: %s probe %+v, want GET /healthz on port %d", name, c.Name, what, pr.ProbeHandler, port)
		}
	}
	a := p.Annotations
	if a["prometheus.io/scrape"] != "true" || a["prometheus.io/port"] != portStr || a["prometheus.io/path"] != "/metrics" {
		t.Errorf("%s: prometheus.io annotations %v, want scrape true, port %s, path /metrics", name, a, portStr)
	}
	if !slices.Contains(c.Args, "--key-file") {
		t.Errorf("%s/%s: no --key-file: the job would run in open mode", name, c.Name)
	}
	var redis bool
	for _, e := range c.Env {
		redis = redis || (e.Name == "REDIS_URL" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil)
	}
	if !redis {
		t.Errorf("%s/%s: REDIS_URL does not come from a Secret", name, c.Name)
	}
}

// checkSecretRefs checks that every Secret a container reads exists and has
// the key read, and that the key files are mounted where --key-file says.
func checkSecretRefs(t *testing.T, objs []object, name string, p *corev1.PodTemplateSpec, c corev1.Container) {
	t.Helper()
	has := func(secret, key string) bool {
		s := find[corev1.Secret](objs, "Secret", secret)
		if s == nil {
			return false
		}
		_, inData := s.Data[key]
		_, inString := s.StringData[key]
		return inData || inString
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			if r := e.ValueFrom.SecretKeyRef; !has(r.Name, r.Key) {
				t.Errorf("%s/%s: env %s reads %s/%s, which no Secret here has", name, c.Name, e.Name, r.Name, r.Key)
			}
		}
	}
	files := map[string]bool{}
	for _, v := range p.Spec.Volumes {
		if v.Secret == nil {
			continue
		}
		var mount string
		for _, m := range c.VolumeMounts {
			if m.Name == v.Name {
				mount = m.MountPath
			}
		}
		for _, it := range v.Secret.Items {
			if !has(v.Secret.SecretName, it.Key) {
				t.Errorf("%s: volume %s reads %s/%s, which no Secret here has", name, v.Name, v.Secret.SecretName, it.Key)
			}
			files[filepath.Join(mount, it.Path)] = true
		}
		if len(v.Secret.Items) == 0 && find[corev1.Secret](objs, "Secret", v.Secret.SecretName) == nil {
			t.Errorf("%s: volume %s mounts Secret %s, which is not here", name, v.Name, v.Secret.SecretName)
		}
	}
	if i := slices.Index(c.Args, "--key-file"); i >= 0 && (i+1 >= len(c.Args) || !files[c.Args[i+1]]) {
		t.Errorf("%s/%s: --key-file %v is not a mounted Secret key (mounted: %v)", name, c.Name, c.Args[i+1:], files)
	}
}

// The collector's Service selects the collector's pods and serves its --http
// port, with the same scrape annotations.
func TestCollectorService(t *testing.T) {
	objs := decode(t)
	svc := find[corev1.Service](objs, "Service", "picluster-collector")
	dep := find[appsv1.Deployment](objs, "Deployment", "picluster-collector")
	if svc == nil || dep == nil {
		t.Fatal("no picluster-collector Service and Deployment")
	}
	for k, v := range svc.Spec.Selector {
		if dep.Spec.Template.Labels[k] != v {
			t.Errorf("Service selects %s=%s, the collector's pods have %q", k, v, dep.Spec.Template.Labels[k])
		}
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.String() != "http" || dep.Spec.Template.Spec.Containers[0].Ports[0].Name != "http" {
		t.Errorf("Service ports %+v: want one, to the collector's port named http", svc.Spec.Ports)
	}
	if svc.Annotations["prometheus.io/scrape"] != "true" || svc.Annotations["prometheus.io/port"] != fmt.Sprint(svc.Spec.Ports[0].Port) {
		t.Errorf("Service annotations %v: want prometheus.io/scrape and the port", svc.Annotations)
	}
	if *dep.Spec.Replicas != 1 || dep.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("collector: %d replicas, strategy %s: want exactly one collector at a time (1, Recreate)", *dep.Spec.Replicas, dep.Spec.Strategy.Type)
	}
	redis := find[corev1.Service](objs, "Service", "redis")
	if redis == nil || redis.Spec.Ports[0].Port != 6379 {
		t.Error("no redis Service on 6379")
	}
}

// The ACL file has the three users of the ledger's least-privilege rules,
// and the passwords in the Redis URLs are those of the ACL users.
func TestRedisACL(t *testing.T) {
	objs := decode(t)
	acl := find[corev1.Secret](objs, "Secret", "picluster-redis-acl")
	urls := find[corev1.Secret](objs, "Secret", "picluster-redis-urls")
	if acl == nil || urls == nil {
		t.Fatal("no picluster-redis-acl and picluster-redis-urls Secrets")
	}
	lines := strings.Split(strings.TrimSpace(acl.StringData["users.acl"]), "\n")
	pass := map[string]string{}
	var users []string
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) < 3 || f[0] != "user" {
			t.Fatalf("users.acl: %q is not a user line", l)
		}
		users = append(users, f[1])
		for _, r := range f[2:] {
			if p, ok := strings.CutPrefix(r, ">"); ok {
				pass[f[1]] = p
			}
		}
	}
	if want := []string{"default", "picluster-collector", "picluster-worker"}; !slices.Equal(users, want) {
		t.Fatalf("users.acl has users %v, want %v", users, want)
	}
	if lines[0] != "user default off" {
		t.Errorf("users.acl: %q, want the default user off", lines[0])
	}
	worker := lines[2]
	for _, want := range []string{" -@all ", " +xadd ", " %R~{pi_collector}:state ", " ~{pi_collector}:ledger:* "} {
		if !strings.Contains(worker+" ", want) {
			t.Errorf("worker ACL lacks %q", strings.TrimSpace(want))
		}
	}
	for _, deny := range []string{"+@all", "+@write", "+@dangerous", "allkeys", "~* ", "+flushall", "+xtrim", "+hset"} {
		if strings.Contains(worker+" ", deny) {
			t.Errorf("worker ACL grants %q", strings.TrimSpace(deny))
		}
	}
	for key, user := range map[string]string{"collector": "picluster-collector", "worker": "picluster-worker"} {
		u, err := url.Parse(urls.StringData[key])
		if err != nil {
			t.Fatalf("Redis URL %s: %v", key, err)
		}
		p, _ := u.User.Password()
		if u.Scheme != "redis" && u.Scheme != "rediss" || u.User.Username() != user || p == "" || p != pass[user] || u.Host != "redis:6379" {
			t.Errorf("Redis URL %s = %s: want user %s with the ACL's password, at redis:6379", key, u.Redacted(), user)
		}
	}
}

// Worker Deployment and Job: scalable, or indexed, with stable worker ids.
func TestWorkers(t *testing.T) {
	objs := decode(t)
	dep := find[appsv1.Deployment](objs, "Deployment", "picluster-worker")
	job := find[batchv1.Job](objs, "Job", "picluster-workers")
	if dep == nil || job == nil {
		t.Fatal("no picluster-worker Deployment and picluster-workers Job")
	}
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas < 1 {
		t.Errorf("worker Deployment: replicas %v", dep.Spec.Replicas)
	}
	if job.Spec.CompletionMode == nil || *job.Spec.CompletionMode != batchv1.IndexedCompletion ||
		job.Spec.Parallelism == nil || *job.Spec.Parallelism < 1 || job.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyOnFailure {
		t.Errorf("worker Job: want Indexed, a parallelism, restartPolicy OnFailure")
	}
	for name, c := range map[string]corev1.Container{"Deployment": dep.Spec.Template.Spec.Containers[0], "Job": job.Spec.Template.Spec.Containers[0]} {
		i := slices.Index(c.Args, "--id")
		if i < 0 {
			t.Errorf("%s: workers without --id", name)
			continue
		}
		ref := regexp.MustCompile(`\$\((\w+)\)`).FindStringSubmatch(c.Args[i+1])
		if ref == nil {
			t.Errorf("%s: --id %q names no per-pod variable", name, c.Args[i+1])
			continue
		}
		var fromPod bool
		for _, e := range c.Env {
			fromPod = fromPod || (e.Name == ref[1] && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil)
		}
		if !fromPod {
			t.Errorf("%s: --id uses $(%s), which is not set from the pod (downward API)", name, ref[1])
		}
	}
	if !bytes.Contains(mustRead(t, "workers-job.yaml"), []byte("namespace: picluster")) {
		t.Error("workers-job.yaml, applied with -f, must name its namespace")
	}
}

func mustRead(t *testing.T, f string) []byte {
	t.Helper()
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
