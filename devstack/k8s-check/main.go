// k8s-check validates rendered Kubernetes manifests offline, against the API types of the
// Kubernetes release pinned in go.mod (k8s.io/api), instead of JSON schemas fetched from the
// internet as kubeconform does. Each document is decoded strictly into its kind's Go type: an
// unknown or misspelt field, a duplicate key or a value of the wrong type is an error, as
// `kubectl apply --validate=strict` reports it. On top, the checks the API server's validation
// would make and a chart most often gets wrong: names, container images, selectors that match
// their pod template, and references (HPA, PDB, Service, secretKeyRef) to objects that exist in
// the same render or are declared external with -external-secret.
//
// Usage: k8s-check [-external-secret NAME]... [-json] FILE (or - for stdin); with -json, a valid
// render is printed as one JSON array of its objects (for tests to inspect) instead of a summary.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// The kinds a chart of this project renders; anything else is refused rather than passed unchecked.
func newObject(apiVersion, kind string) (any, bool) {
	switch apiVersion + "/" + kind {
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}, true
	case "v1/Service":
		return &corev1.Service{}, true
	case "v1/Secret":
		return &corev1.Secret{}, true
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}, true
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}, true
	case "batch/v1/Job":
		return &batchv1.Job{}, true
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, true
	case "autoscaling/v2/HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}, true
	case "networking.k8s.io/v1/NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, true
	case "rbac.authorization.k8s.io/v1/Role":
		return &rbacv1.Role{}, true
	case "rbac.authorization.k8s.io/v1/RoleBinding":
		return &rbacv1.RoleBinding{}, true
	case "monitoring.coreos.com/v1/ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}, true
	}
	return nil, false
}

type checker struct {
	problems []string
	objects  map[string]any // "Kind/name"
	ordered  []json.RawMessage
	external map[string]bool
}

func (c *checker) fail(where, format string, args ...any) {
	c.problems = append(c.problems, where+": "+fmt.Sprintf(format, args...))
}

func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	for _, part := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
		trimmed := strings.TrimSpace(regexp.MustCompile(`(?m)^#.*$`).ReplaceAllString(part, ""))
		if trimmed != "" {
			docs = append(docs, []byte(part))
		}
	}
	return docs
}

func (c *checker) decode(index int, doc []byte) {
	var meta struct {
		metav1.TypeMeta `json:",inline"`
		Metadata        metav1.ObjectMeta `json:"metadata"`
	}
	where := fmt.Sprintf("document %d", index+1)
	if err := yaml.Unmarshal(doc, &meta); err != nil {
		c.fail(where, "not a YAML object: %v", err)
		return
	}
	if meta.Kind == "" || meta.APIVersion == "" {
		c.fail(where, "apiVersion and kind are required")
		return
	}
	where = fmt.Sprintf("%s %s/%s", where, meta.Kind, meta.Metadata.Name)
	obj, known := newObject(meta.APIVersion, meta.Kind)
	if !known {
		c.fail(where, "apiVersion %s kind %s is not one this checker knows", meta.APIVersion, meta.Kind)
		return
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		c.fail(where, "%v", err)
		return
	}
	for _, msg := range validation.IsDNS1123Subdomain(meta.Metadata.Name) {
		c.fail(where, "metadata.name %q: %s", meta.Metadata.Name, msg)
	}
	key := meta.Kind + "/" + meta.Metadata.Name
	if _, dup := c.objects[key]; dup {
		c.fail(where, "rendered twice")
	}
	c.objects[key] = obj
	if asJSON, err := yaml.YAMLToJSON(doc); err == nil {
		c.ordered = append(c.ordered, asJSON)
	}
}

func (c *checker) podSpec(where string, spec *corev1.PodSpec) {
	if len(spec.Containers) == 0 {
		c.fail(where, "spec.containers must not be empty")
	}
	for _, list := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for _, ctr := range list {
			cw := fmt.Sprintf("%s container %q", where, ctr.Name)
			if ctr.Name == "" {
				c.fail(where, "a container has no name")
			}
			if ctr.Image == "" {
				c.fail(cw, "image is required")
			}
			for _, e := range ctr.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					ref := e.ValueFrom.SecretKeyRef
					c.secretRef(cw+" env "+e.Name, ref.Name, ref.Key, ref.Optional != nil && *ref.Optional)
				}
			}
			for _, f := range ctr.EnvFrom {
				if f.SecretRef != nil {
					c.secretRef(cw+" envFrom", f.SecretRef.Name, "", false)
				}
			}
		}
	}
	for _, v := range spec.Volumes {
		if v.Secret != nil {
			c.secretRef(where+" volume "+v.Name, v.Secret.SecretName, "", false)
		}
	}
}

// secretRef: an optional key may be absent from a rendered Secret (the variable is then unset).
func (c *checker) secretRef(where, name, key string, optional bool) {
	if c.external[name] {
		return
	}
	obj, ok := c.objects["Secret/"+name]
	if !ok {
		c.fail(where, "refers to Secret %q, which is neither rendered nor declared external", name)
		return
	}
	if key == "" || optional {
		return
	}
	secret := obj.(*corev1.Secret)
	if _, has := secret.StringData[key]; has {
		return
	}
	if _, has := secret.Data[key]; !has {
		c.fail(where, "refers to key %q, which Secret %q does not have", key, name)
	}
}

func (c *checker) selector(where string, sel *metav1.LabelSelector, podLabels map[string]string) {
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		c.fail(where, "selector is required and must not be empty")
		return
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		c.fail(where, "selector: %v", err)
		return
	}
	if podLabels != nil && !s.Matches(labels.Set(podLabels)) {
		c.fail(where, "selector %s does not match the pod template labels %v", s, podLabels)
	}
}

// deploymentsMatching: how many rendered Deployments' pods a selector picks.
func (c *checker) deploymentsMatching(sel labels.Selector) int {
	n := 0
	for key, obj := range c.objects {
		if d, ok := obj.(*appsv1.Deployment); ok && strings.HasPrefix(key, "Deployment/") && sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			n++
		}
	}
	return n
}

func (c *checker) semantics() {
	for key, obj := range c.objects {
		switch o := obj.(type) {
		case *appsv1.Deployment:
			c.selector(key, o.Spec.Selector, o.Spec.Template.Labels)
			c.podSpec(key, &o.Spec.Template.Spec)
		case *batchv1.Job:
			c.podSpec(key, &o.Spec.Template.Spec)
			if p := o.Spec.Template.Spec.RestartPolicy; p != corev1.RestartPolicyNever && p != corev1.RestartPolicyOnFailure {
				c.fail(key, "a Job's restartPolicy must be Never or OnFailure, not %q", p)
			}
		case *policyv1.PodDisruptionBudget:
			c.selector(key, o.Spec.Selector, nil)
			if (o.Spec.MinAvailable == nil) == (o.Spec.MaxUnavailable == nil) {
				c.fail(key, "set exactly one of minAvailable and maxUnavailable")
			}
			if s, err := metav1.LabelSelectorAsSelector(o.Spec.Selector); err == nil && c.deploymentsMatching(s) == 0 {
				c.fail(key, "selects no rendered Deployment's pods")
			}
		case *autoscalingv2.HorizontalPodAutoscaler:
			ref := o.Spec.ScaleTargetRef
			if _, ok := c.objects[ref.Kind+"/"+ref.Name]; !ok {
				c.fail(key, "scaleTargetRef %s/%s is not rendered", ref.Kind, ref.Name)
			}
			if o.Spec.MinReplicas != nil && *o.Spec.MinReplicas > o.Spec.MaxReplicas {
				c.fail(key, "minReplicas %d is above maxReplicas %d", *o.Spec.MinReplicas, o.Spec.MaxReplicas)
			}
			if len(o.Spec.Metrics) == 0 {
				c.fail(key, "no metrics")
			}
		case *corev1.Service:
			if len(o.Spec.Ports) == 0 {
				c.fail(key, "no ports")
			}
			if c.deploymentsMatching(labels.SelectorFromSet(o.Spec.Selector)) == 0 || len(o.Spec.Selector) == 0 {
				c.fail(key, "selects no rendered Deployment's pods")
			}
		case *networkingv1.NetworkPolicy:
			if s, err := metav1.LabelSelectorAsSelector(&o.Spec.PodSelector); err != nil {
				c.fail(key, "podSelector: %v", err)
			} else if c.deploymentsMatching(s) == 0 {
				c.fail(key, "podSelector selects no rendered Deployment's pods")
			}
		case *monitoringv1.ServiceMonitor:
			if len(o.Spec.Endpoints) == 0 {
				c.fail(key, "no endpoints")
			}
		}
	}
}

func main() {
	var external stringList
	flag.Var(&external, "external-secret", "a Secret that exists outside the render (repeatable)")
	printJSON := flag.Bool("json", false, "print the valid objects as a JSON array")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: k8s-check [-external-secret NAME]... FILE|-")
		os.Exit(2)
	}
	var data []byte
	var err error
	if flag.Arg(0) == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(flag.Arg(0))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	c := &checker{objects: map[string]any{}, external: map[string]bool{}}
	for _, name := range external {
		c.external[name] = true
	}
	docs := splitDocuments(bytes.TrimSpace(data))
	for i, doc := range docs {
		c.decode(i, doc)
	}
	if len(c.problems) == 0 {
		c.semantics()
	}
	if len(c.problems) > 0 {
		for _, p := range c.problems {
			fmt.Fprintln(os.Stderr, p)
		}
		os.Exit(1)
	}
	if *printJSON {
		out, _ := json.Marshal(c.ordered)
		fmt.Println(string(out))
		return
	}
	kinds := map[string]int{}
	for key := range c.objects {
		kinds[strings.SplitN(key, "/", 2)[0]]++
	}
	fmt.Printf("%d objects valid against Kubernetes API types %s: %v\n", len(c.objects), kubernetesVersion, kinds)
}

// kubernetesVersion is the release whose API types k8s.io/api v0.34 carries (go.mod).
const kubernetesVersion = "1.34"
