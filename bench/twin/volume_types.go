package main

// The StoragePool and Volume types, as a kubebuilder user would declare them
// in api/v1alpha1 (the fields the volume domain reads and writes), with the
// DeepCopy methods controller-gen would generate, written by hand.

import (
	"encoding/json"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

type StoragePoolSpec struct {
	NodeName         string            `json:"nodeName"`
	Path             string            `json:"path"`
	Capacity         resource.Quantity `json:"capacity"`
	StorageClassName string            `json:"storageClassName,omitempty"`
	Quota            string            `json:"quota,omitempty"`
}

// Admission: one entry of status.inFlight (the ledger, volume_ledger.go).
type Admission struct {
	UID           string      `json:"uid"`
	Bytes         int64       `json:"bytes"`
	AdmittedUntil metav1.Time `json:"admittedUntil"`
}

// AgentReport: status.agent as the node agent writes it (read only; the
// status carries the agent's raw JSON over unchanged).
type AgentReport struct {
	ObservedGeneration *int64       `json:"observedGeneration,omitempty"`
	HeartbeatTime      *metav1.Time `json:"heartbeatTime,omitempty"`
	Present            bool         `json:"present,omitempty"`
	Writable           bool         `json:"writable,omitempty"`
	Filesystem         string       `json:"filesystem,omitempty"`
	QuotaSupported     bool         `json:"quotaSupported,omitempty"`
	QuotaMessage       string       `json:"quotaMessage,omitempty"`
	UsedBytes          *int64       `json:"usedBytes,omitempty"`
	Message            string       `json:"message,omitempty"`
}

type StoragePoolStatus struct {
	ObservedGeneration int64       `json:"observedGeneration,omitempty"`
	CapacityBytes      *int64      `json:"capacityBytes,omitempty"`
	AllocatedBytes     *int64      `json:"allocatedBytes,omitempty"`
	AvailableBytes     *int64      `json:"availableBytes,omitempty"`
	Volumes            int32       `json:"volumes"`
	UsedBytes          *int64      `json:"usedBytes,omitempty"`
	Quota              string      `json:"quota,omitempty"`
	InFlight           []Admission `json:"inFlight,omitempty"`
	// The node agent's report: its own, carried over unchanged.
	Agent      json.RawMessage    `json:"agent,omitempty"`
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

type StoragePool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              StoragePoolSpec   `json:"spec,omitempty"`
	Status            StoragePoolStatus `json:"status,omitempty"`
}

type StoragePoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []StoragePool `json:"items"`
}

type VolumeSpec struct {
	Size          resource.Quantity `json:"size"`
	Pool          string            `json:"pool,omitempty"`
	NodeName      string            `json:"nodeName,omitempty"`
	ReclaimPolicy string            `json:"reclaimPolicy,omitempty"`
	AccessModes   []string          `json:"accessModes,omitempty"`
}

type VolumeStatus struct {
	ObservedGeneration        int64              `json:"observedGeneration,omitempty"`
	Pool                      string             `json:"pool,omitempty"`
	NodeName                  string             `json:"nodeName,omitempty"`
	Path                      string             `json:"path,omitempty"`
	PersistentVolumeName      string             `json:"persistentVolumeName,omitempty"`
	PersistentVolumeClaimName string             `json:"persistentVolumeClaimName,omitempty"`
	CapacityBytes             *int64             `json:"capacityBytes,omitempty"`
	UsedBytes                 *int64             `json:"usedBytes,omitempty"`
	Conditions                []metav1.Condition `json:"conditions,omitempty"`
}

type Volume struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              VolumeSpec   `json:"spec,omitempty"`
	Status            VolumeStatus `json:"status,omitempty"`
}

type VolumeList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Volume `json:"items"`
}

func addVolumeTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(groupVersion, &StoragePool{}, &StoragePoolList{}, &Volume{}, &VolumeList{})
	return nil
}

// ---- deep copies (what controller-gen writes) ----

func copyInt64(in *int64) *int64 {
	if in == nil {
		return nil
	}
	v := *in
	return &v
}

func (in *StoragePool) DeepCopyInto(out *StoragePool) {
	*out = *in
	in.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	out.Spec.Capacity = in.Spec.Capacity.DeepCopy()
	out.Status.CapacityBytes = copyInt64(in.Status.CapacityBytes)
	out.Status.AllocatedBytes = copyInt64(in.Status.AllocatedBytes)
	out.Status.AvailableBytes = copyInt64(in.Status.AvailableBytes)
	out.Status.UsedBytes = copyInt64(in.Status.UsedBytes)
	if in.Status.InFlight != nil {
		out.Status.InFlight = make([]Admission, len(in.Status.InFlight))
		for i := range in.Status.InFlight {
			e := in.Status.InFlight[i]
			e.AdmittedUntil = *in.Status.InFlight[i].AdmittedUntil.DeepCopy()
			out.Status.InFlight[i] = e
		}
	}
	if in.Status.Agent != nil {
		out.Status.Agent = append(json.RawMessage(nil), in.Status.Agent...)
	}
	out.Status.Conditions = copyConditions(in.Status.Conditions)
}

func (in *StoragePool) DeepCopy() *StoragePool {
	if in == nil {
		return nil
	}
	out := new(StoragePool)
	in.DeepCopyInto(out)
	return out
}

func (in *StoragePool) DeepCopyObject() runtime.Object { return in.DeepCopy() }

func (in *StoragePoolList) DeepCopyObject() runtime.Object {
	out := &StoragePoolList{TypeMeta: in.TypeMeta}
	in.ListMeta.DeepCopyInto(&out.ListMeta)
	if in.Items != nil {
		out.Items = make([]StoragePool, len(in.Items))
		for i := range in.Items {
			in.Items[i].DeepCopyInto(&out.Items[i])
		}
	}
	return out
}

func (in *Volume) DeepCopyInto(out *Volume) {
	*out = *in
	in.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	out.Spec.Size = in.Spec.Size.DeepCopy()
	if in.Spec.AccessModes != nil {
		out.Spec.AccessModes = append([]string(nil), in.Spec.AccessModes...)
	}
	out.Status.CapacityBytes = copyInt64(in.Status.CapacityBytes)
	out.Status.UsedBytes = copyInt64(in.Status.UsedBytes)
	out.Status.Conditions = copyConditions(in.Status.Conditions)
}

func (in *Volume) DeepCopy() *Volume {
	if in == nil {
		return nil
	}
	out := new(Volume)
	in.DeepCopyInto(out)
	return out
}

func (in *Volume) DeepCopyObject() runtime.Object { return in.DeepCopy() }

func (in *VolumeList) DeepCopyObject() runtime.Object {
	out := &VolumeList{TypeMeta: in.TypeMeta}
	in.ListMeta.DeepCopyInto(&out.ListMeta)
	if in.Items != nil {
		out.Items = make([]Volume, len(in.Items))
		for i := range in.Items {
			in.Items[i].DeepCopyInto(&out.Items[i])
		}
	}
	return out
}
