package main

// The DevicePool and DeviceClaim types, as a kubebuilder user would declare
// them in api/v1alpha1 (the fields the device domain reads and writes), with
// the DeepCopy methods controller-gen would generate, written by hand.

import (
	"encoding/json"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

type DeviceSpec struct {
	ID         string            `json:"id"`
	Path       string            `json:"path,omitempty"`
	Healthy    *bool             `json:"healthy,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
}

type DeviceDiscover struct {
	Paths      []string          `json:"paths"`
	Attributes map[string]string `json:"attributes,omitempty"`
}

type DevicePoolSpec struct {
	NodeName     string          `json:"nodeName"`
	ResourceName string          `json:"resourceName"`
	Publish      string          `json:"publish,omitempty"`
	Advertise    *bool           `json:"advertise,omitempty"`
	Devices      []DeviceSpec    `json:"devices,omitempty"`
	Discover     *DeviceDiscover `json:"discover,omitempty"`
}

type DeviceState struct {
	ID      string `json:"id"`
	Healthy bool   `json:"healthy"`
	Source  string `json:"source"`
	Claim   string `json:"claim,omitempty"`
	Message string `json:"message,omitempty"`
}

type DevicePoolStatus struct {
	ObservedGeneration int64         `json:"observedGeneration,omitempty"`
	Capacity           int64         `json:"capacity"`
	Allocated          int64         `json:"allocated"`
	Available          int64         `json:"available"`
	Unhealthy          int64         `json:"unhealthy"`
	Publish            string        `json:"publish,omitempty"`
	Devices            []DeviceState `json:"devices,omitempty"`
	// The node agent's report: its own, carried over unchanged by every
	// status write (the twin does not read it).
	Agent      json.RawMessage    `json:"agent,omitempty"`
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

type DevicePool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              DevicePoolSpec   `json:"spec,omitempty"`
	Status            DevicePoolStatus `json:"status,omitempty"`
}

type DevicePoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DevicePool `json:"items"`
}

type DeviceClaimSpec struct {
	ResourceName     string            `json:"resourceName"`
	Count            *int32            `json:"count,omitempty"`
	NodeName         string            `json:"nodeName,omitempty"`
	Selector         map[string]string `json:"selector,omitempty"`
	ReplaceUnhealthy bool              `json:"replaceUnhealthy,omitempty"`
}

type DeviceClaimStatus struct {
	ObservedGeneration int64              `json:"observedGeneration,omitempty"`
	Pool               string             `json:"pool,omitempty"`
	NodeName           string             `json:"nodeName,omitempty"`
	Devices            []string           `json:"devices,omitempty"`
	ResourceClaimName  string             `json:"resourceClaimName,omitempty"`
	Conditions         []metav1.Condition `json:"conditions,omitempty"`
}

type DeviceClaim struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              DeviceClaimSpec   `json:"spec,omitempty"`
	Status            DeviceClaimStatus `json:"status,omitempty"`
}

type DeviceClaimList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DeviceClaim `json:"items"`
}

func addDeviceTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(groupVersion, &DevicePool{}, &DevicePoolList{}, &DeviceClaim{}, &DeviceClaimList{})
	return nil
}

// ---- deep copies (what controller-gen writes) ----

func copyStringMap(in map[string]string) map[string]string {
	if in == nil {
		return nil
	}
	out := make(map[string]string, len(in))
	for k, v := range in {
		out[k] = v
	}
	return out
}

func (in *DevicePool) DeepCopyInto(out *DevicePool) {
	*out = *in
	in.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	if in.Spec.Advertise != nil {
		v := *in.Spec.Advertise
		out.Spec.Advertise = &v
	}
	if in.Spec.Devices != nil {
		out.Spec.Devices = make([]DeviceSpec, len(in.Spec.Devices))
		for i := range in.Spec.Devices {
			d := in.Spec.Devices[i]
			if d.Healthy != nil {
				v := *d.Healthy
				d.Healthy = &v
			}
			d.Attributes = copyStringMap(d.Attributes)
			out.Spec.Devices[i] = d
		}
	}
	if in.Spec.Discover != nil {
		d := *in.Spec.Discover
		d.Paths = append([]string(nil), d.Paths...)
		d.Attributes = copyStringMap(d.Attributes)
		out.Spec.Discover = &d
	}
	if in.Status.Devices != nil {
		out.Status.Devices = append([]DeviceState(nil), in.Status.Devices...)
	}
	if in.Status.Agent != nil {
		out.Status.Agent = append(json.RawMessage(nil), in.Status.Agent...)
	}
	out.Status.Conditions = copyConditions(in.Status.Conditions)
}

func (in *DevicePool) DeepCopy() *DevicePool {
	if in == nil {
		return nil
	}
	out := new(DevicePool)
	in.DeepCopyInto(out)
	return out
}

func (in *DevicePool) DeepCopyObject() runtime.Object { return in.DeepCopy() }

func (in *DevicePoolList) DeepCopyObject() runtime.Object {
	out := &DevicePoolList{TypeMeta: in.TypeMeta}
	in.ListMeta.DeepCopyInto(&out.ListMeta)
	if in.Items != nil {
		out.Items = make([]DevicePool, len(in.Items))
		for i := range in.Items {
			in.Items[i].DeepCopyInto(&out.Items[i])
		}
	}
	return out
}

func (in *DeviceClaim) DeepCopyInto(out *DeviceClaim) {
	*out = *in
	in.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	if in.Spec.Count != nil {
		v := *in.Spec.Count
		out.Spec.Count = &v
	}
	out.Spec.Selector = copyStringMap(in.Spec.Selector)
	if in.Status.Devices != nil {
		out.Status.Devices = append([]string(nil), in.Status.Devices...)
	}
	out.Status.Conditions = copyConditions(in.Status.Conditions)
}

func (in *DeviceClaim) DeepCopy() *DeviceClaim {
	if in == nil {
		return nil
	}
	out := new(DeviceClaim)
	in.DeepCopyInto(out)
	return out
}

func (in *DeviceClaim) DeepCopyObject() runtime.Object { return in.DeepCopy() }

func (in *DeviceClaimList) DeepCopyObject() runtime.Object {
	out := &DeviceClaimList{TypeMeta: in.TypeMeta}
	in.ListMeta.DeepCopyInto(&out.ListMeta)
	if in.Items != nil {
		out.Items = make([]DeviceClaim, len(in.Items))
		for i := range in.Items {
			in.Items[i].DeepCopyInto(&out.Items[i])
		}
	}
	return out
}
