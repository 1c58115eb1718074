package main

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// devHash must be provisio's inf_map_hash: the values below are the C
// function's (src/informer/inf_map.c).
func TestDevHash(t *testing.T) {
	for _, c := range []struct {
		key  string
		want uint64
	}{
		{"", 16388411138889640531},
		{"a", 7842242305317833877},
		{"0b9f1c2e-3d4a-4b5c-8d6e-7f8091a2b3c4", 6430400267196044240},
		{"c-17", 4047215591616208653},
	} {
		if got := devHash(c.key); got != c.want {
			t.Errorf("devHash(%q) = %d, want %d", c.key, got, c.want)
		}
	}
}

func testPool(name, node string, ids ...string) *devPool {
	p := &DevicePool{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: DevicePoolSpec{NodeName: node, ResourceName: "x.dev/y"}}
	for _, id := range ids {
		p.Spec.Devices = append(p.Spec.Devices, DeviceSpec{ID: id})
	}
	dp, problem := parseDevPool(p)
	if dp == nil {
		panic(problem)
	}
	return dp
}

func TestChooseAndPick(t *testing.T) {
	a := testPool("a", "n1", "d2", "d0", "d1")
	b := testPool("b", "n2", "e0")
	w := &devWant{resource: "x.dev/y", count: 2}
	views := []devView{{name: "b", dp: b}, {name: "a", dp: a}}
	for i := range views {
		views[i].fit, views[i].free = w.fit(views[i].dp, map[string]bool{"d0": true})
	}
	if views[1].fit != 3 || views[1].free != 2 || views[0].free != 1 {
		t.Fatalf("fit/free: %+v", views)
	}
	i, reason, _ := w.choosePool(views, "uid")
	if i != 1 || reason != "" {
		t.Fatalf("choosePool: %d %s", i, reason)
	}
	got := w.pick(a, "uid", map[string]bool{"d0": true}, map[string]bool{})
	if got != "d1" && got != "d2" {
		t.Fatalf("pick: %q", got)
	}
	w.count = 4
	if _, reason, _ := w.choosePool(views, "uid"); reason != reasonNoMatch {
		t.Fatalf("count 4: %s", reason)
	}
	w.count, w.sel = 1, map[string]string{"k": "v"}
	if _, reason, _ := w.choosePool(views, "uid"); reason != reasonInvalidSpec {
		t.Fatalf("unknown key: %s", reason)
	}
}
