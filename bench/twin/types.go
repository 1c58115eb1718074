package main

// The provisio.dev/v1alpha1 types the twin reads and writes, as a kubebuilder
// user would declare them in api/v1alpha1 (only the fields the IP domain
// uses). The DeepCopy methods are what controller-gen would generate,
// written by hand to keep the module free of code generation.

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var groupVersion = schema.GroupVersion{Group: "provisio.dev", Version: "v1alpha1"}

type Route struct {
	Dst string `json:"dst"`
	GW  string `json:"gw,omitempty"`
}

type IPPoolSpec struct {
	CIDR       string   `json:"cidr"`
	RangeStart string   `json:"rangeStart,omitempty"`
	RangeEnd   string   `json:"rangeEnd,omitempty"`
	Gateway    string   `json:"gateway,omitempty"`
	Exclude    []string `json:"exclude,omitempty"`
	Routes     []Route  `json:"routes,omitempty"`
	Network    string   `json:"network,omitempty"`
}

type IPPoolStatus struct {
	Total              int64              `json:"total"`
	Allocated          int64              `json:"allocated"`
	Available          int64              `json:"available"`
	ObservedGeneration int64              `json:"observedGeneration,omitempty"`
	Conditions         []metav1.Condition `json:"conditions,omitempty"`
}

type IPPool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              IPPoolSpec   `json:"spec,omitempty"`
	Status            IPPoolStatus `json:"status,omitempty"`
}

type IPPoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []IPPool `json:"items"`
}

type IPClaimSpec struct {
	Pool    string `json:"pool"`
	Address string `json:"address,omitempty"`
}

type IPClaimStatus struct {
	Address    string             `json:"address,omitempty"`
	Gateway    string             `json:"gateway,omitempty"`
	Routes     []Route            `json:"routes,omitempty"`
	Pool       string             `json:"pool,omitempty"`
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

type IPClaim struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              IPClaimSpec   `json:"spec,omitempty"`
	Status            IPClaimStatus `json:"status,omitempty"`
}

type IPClaimList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []IPClaim `json:"items"`
}

type PoolRef struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

type ClaimRef struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid"`
}

type ReservationSpec struct {
	Pool    PoolRef  `json:"pool"`
	Network string   `json:"network,omitempty"`
	Slot    string   `json:"slot"`
	Claim   ClaimRef `json:"claim"`
	Bytes   int64    `json:"bytes,omitempty"`
	// StoragePool only: the deadline of the admission it was made from.
	AdmittedUntil *metav1.Time `json:"admittedUntil,omitempty"`
}

// ReservationStatus: a StoragePool Reservation's directory, written by the
// node agent (the operator never writes it).
type ReservationStatus struct {
	Phase     string `json:"phase,omitempty"`
	Path      string `json:"path,omitempty"`
	Quota     string `json:"quota,omitempty"`
	UsedBytes *int64 `json:"usedBytes,omitempty"`
	Message   string `json:"message,omitempty"`
}

type Reservation struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ReservationSpec    `json:"spec"`
	Status            *ReservationStatus `json:"status,omitempty"`
}

type ReservationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Reservation `json:"items"`
}

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(groupVersion, &IPPool{}, &IPPoolList{}, &IPClaim{}, &IPClaimList{},
		&Reservation{}, &ReservationList{})
	metav1.AddToGroupVersion(s, groupVersion)
	return nil
}

// ---- deep copies (what controller-gen writes) ----

func copyRoutes(in []Route) []Route {
	if in == nil {
		return nil
	}
	return append([]Route(nil), in...)
}

func copyConditions(in []metav1.Condition) []metav1.Condition {
	if in == nil {
		return nil
	}
	out := make([]metav1.Condition, len(in))
	for i := range in {
		in[i].DeepCopyInto(&out[i])
	}
	return out
}

func (in *IPPool) DeepCopyInto(out *IPPool) {
	*out = *in
	in.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	if in.Spec.Exclude != nil {
		out.Spec.Exclude = append([]string(nil), in.Spec.Exclude...)
	}
	out.Spec.Routes = copyRoutes(in.Spec.Routes)
	out.Status.Conditions = copyConditions(in.Status.Conditions)
}

func (in *IPPool) DeepCopy() *IPPool {
	if in == nil {
		return nil
	}
	out := new(IPPool)
	in.DeepCopyInto(out)
	return out
}

func (in *IPPool) DeepCopyObject() runtime.Object { return in.DeepCopy() }

func (in *IPPoolList) DeepCopyObject() runtime.Object {
	out := &IPPoolList{TypeMeta: in.TypeMeta}
	in.ListMeta.DeepCopyInto(&out.ListMeta)
	if in.Items != nil {
		out.Items = make([]IPPool, len(in.Items))
		for i := range in.Items {
			in.Items[i].DeepCopyInto(&out.Items[i])
		}
	}
	return out
}

func (in *IPClaim) DeepCopyInto(out *IPClaim) {
	*out = *in
	in.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	out.Status.Routes = copyRoutes(in.Status.Routes)
	out.Status.Conditions = copyConditions(in.Status.Conditions)
}

func (in *IPClaim) DeepCopy() *IPClaim {
	if in == nil {
		return nil
	}
	out := new(IPClaim)
	in.DeepCopyInto(out)
	return out
}

func (in *IPClaim) DeepCopyObject() runtime.Object { return in.DeepCopy() }

func (in *IPClaimList) DeepCopyObject() runtime.Object {
	out := &IPClaimList{TypeMeta: in.TypeMeta}
	in.ListMeta.DeepCopyInto(&out.ListMeta)
	if in.Items != nil {
		out.Items = make([]IPClaim, len(in.Items))
		for i := range in.Items {
			in.Items[i].DeepCopyInto(&out.Items[i])
		}
	}
	return out
}

func (in *Reservation) DeepCopyInto(out *Reservation) {
	*out = *in
	in.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	if in.Spec.AdmittedUntil != nil {
		out.Spec.AdmittedUntil = in.Spec.AdmittedUntil.DeepCopy()
	}
	if in.Status != nil {
		st := *in.Status
		if st.UsedBytes != nil {
			v := *st.UsedBytes
			st.UsedBytes = &v
		}
		out.Status = &st
	}
}

func (in *Reservation) DeepCopy() *Reservation {
	if in == nil {
		return nil
	}
	out := new(Reservation)
	in.DeepCopyInto(out)
	return out
}

func (in *Reservation) DeepCopyObject() runtime.Object { return in.DeepCopy() }

func (in *ReservationList) DeepCopyObject() runtime.Object {
	out := &ReservationList{TypeMeta: in.TypeMeta}
	in.ListMeta.DeepCopyInto(&out.ListMeta)
	if in.Items != nil {
		out.Items = make([]Reservation, len(in.Items))
		for i := range in.Items {
			in.Items[i].DeepCopyInto(&out.Items[i])
		}
	}
	return out
}
