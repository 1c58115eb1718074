package main

// What a placed Volume becomes once the node agent made its directory
// (provisio's vol_pv.c): a local PersistentVolume vol-<uid> (node affinity
// to the pool's node, pre-bound to the claim by claimRef, label
// provisio.dev/volume-uid) and a PersistentVolumeClaim of the Volume's name
// (owned by the Volume, spec.volumeName set), which kube-controller-manager
// binds. The claim is made only once the cache shows the PV (its watch event
// wakes the Volume): a PVC naming a PV that kube-controller-manager has not
// seen yet waits for its next resync, 15 s. And the way back: the claim and
// the PV deleted, waited for, before the directory may go.

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

type binding struct {
	ready           bool
	pv, pvc         string
	reason, message string // when not ready
}

func accessModes(v *Volume) []corev1.PersistentVolumeAccessMode {
	if len(v.Spec.AccessModes) == 0 {
		return []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	}
	out := make([]corev1.PersistentVolumeAccessMode, len(v.Spec.AccessModes))
	for i, m := range v.Spec.AccessModes {
		out[i] = corev1.PersistentVolumeAccessMode(m)
	}
	return out
}

func pvBody(v *Volume, name string, size int64, node, path, cls string) *corev1.PersistentVolume {
	fs := corev1.PersistentVolumeFilesystem
	policy := corev1.PersistentVolumeReclaimDelete
	if volRetains(v) {
		policy = corev1.PersistentVolumeReclaimRetain
	}
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Labels:      map[string]string{labelVolumeUID: string(v.UID)},
			Annotations: map[string]string{"pv.kubernetes.io/provisioned-by": volProvisioner},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: *resource.NewQuantity(size, resource.BinarySI)},
			AccessModes:                   accessModes(v),
			PersistentVolumeReclaimPolicy: policy,
			StorageClassName:              cls,
			VolumeMode:                    &fs,
			PersistentVolumeSource:        corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: path}},
			ClaimRef: &corev1.ObjectReference{APIVersion: "v1", Kind: "PersistentVolumeClaim",
				Namespace: v.Namespace, Name: v.Name},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
					Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: []string{node},
				}}}},
			}},
		},
	}
}

func pvcBody(v *Volume, pv string, size int64, cls string) *corev1.PersistentVolumeClaim {
	fs := corev1.PersistentVolumeFilesystem
	yes := true
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{
			Name:      v.Name,
			Namespace: v.Namespace,
			Labels:    map[string]string{labelVolumeUID: string(v.UID)},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: groupVersion.String(), Kind: kindVolume,
				Name: v.Name, UID: v.UID, Controller: &yes, BlockOwnerDeletion: &yes}},
		},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: accessModes(v),
			Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: *resource.NewQuantity(size, resource.BinarySI)},
			},
			StorageClassName: &cls,
			VolumeMode:       &fs,
			VolumeName:       pv,
		},
	}
}

// ensurePV makes the PV and the PVC where missing and says whether they are
// bound (an error: a request failed).
func (r *VolumeReconciler) ensurePV(ctx context.Context, v *Volume, size int64, node, path, cls string) (binding, error) {
	b := binding{pv: pvName(v), pvc: v.Name}
	uid := string(v.UID)
	var pv corev1.PersistentVolume
	havePV := false
	if err := r.Get(ctx, types.NamespacedName{Name: b.pv}, &pv); err == nil {
		havePV = true
		if pv.Labels[labelVolumeUID] != uid {
			b.reason, b.message = reasonVolumeConflict, fmt.Sprintf("PersistentVolume %s exists and belongs to another volume", b.pv)
			return b, nil
		}
	} else if !apierrors.IsNotFound(err) {
		return b, err
	} else {
		err := r.Create(ctx, pvBody(v, b.pv, size, node, path, cls))
		if err == nil {
			b.reason = reasonBinding
			b.message = fmt.Sprintf("PersistentVolume %s made; its PersistentVolumeClaim %s/%s follows once it is seen", b.pv, v.Namespace, v.Name)
			return b, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return b, err
		}
		// Not cached (made a moment ago, or not labelled): ours when it
		// carries this Volume's uid, else VolumeConflict.
		var got corev1.PersistentVolume
		if err := r.APIReader.Get(ctx, types.NamespacedName{Name: b.pv}, &got); err == nil {
			if got.Labels[labelVolumeUID] != uid {
				b.reason, b.message = reasonVolumeConflict, fmt.Sprintf("PersistentVolume %s exists and belongs to another volume", b.pv)
				return b, nil
			}
		} else if !apierrors.IsNotFound(err) {
			return b, err
		}
	}
	var pvc corev1.PersistentVolumeClaim
	havePVC := true
	if err := r.Get(ctx, types.NamespacedName{Namespace: v.Namespace, Name: v.Name}, &pvc); err != nil {
		if !apierrors.IsNotFound(err) {
			return b, err
		}
		havePVC = false
	}
	// A dynamic Volume's PVC is its owner, made by the user: never made
	// again here, nor its PV reopened.
	_, dynamic := v.Annotations[annPVName]
	if havePV && !dynamic {
		var pp *corev1.PersistentVolumeClaim
		if havePVC {
			pp = &pvc
		}
		if err := r.reopenReleased(ctx, &pv, pp); err != nil {
			return b, err
		}
	}
	switch {
	case !havePVC && dynamic:
		b.reason = reasonBinding
		b.message = fmt.Sprintf("PersistentVolume %s made; PersistentVolumeClaim %s/%s, which this volume was made for, is gone", b.pv, v.Namespace, v.Name)
	case havePVC && pvc.Spec.VolumeName != "" && pvc.Spec.VolumeName != b.pv:
		b.reason = reasonClaimConflict
		b.message = fmt.Sprintf("PersistentVolumeClaim %s/%s is bound to PersistentVolume %s, not to this volume's %s", v.Namespace, v.Name, pvc.Spec.VolumeName, b.pv)
	case havePVC && pvc.Status.Phase == corev1.ClaimBound && pvc.Spec.VolumeName != "":
		b.ready = true
	case havePVC && !pvc.DeletionTimestamp.IsZero():
		b.reason = reasonBinding
		b.message = fmt.Sprintf("PersistentVolumeClaim %s/%s is being deleted", v.Namespace, v.Name)
	case havePVC:
		b.reason = reasonBinding
		b.message = fmt.Sprintf("PersistentVolume %s made; waiting for kube-controller-manager to bind it to PersistentVolumeClaim %s/%s", b.pv, v.Namespace, v.Name)
	default:
		if err := r.Create(ctx, pvcBody(v, b.pv, size, cls)); err != nil && !apierrors.IsAlreadyExists(err) {
			return b, err
		}
		b.reason = reasonBinding
		b.message = fmt.Sprintf("PersistentVolume %s and PersistentVolumeClaim %s/%s made; waiting for kube-controller-manager to bind them", b.pv, v.Namespace, v.Name)
	}
	return b, nil
}

// reopenReleased: the PVC of a live Volume was deleted by hand, and
// kube-controller-manager marked the PV Released (its claimRef keeps the
// old uid): open it for the next PVC of that name (claimRef's uid and
// resourceVersion go, under the PV's resourceVersion).
func (r *VolumeReconciler) reopenReleased(ctx context.Context, pv *corev1.PersistentVolume, pvc *corev1.PersistentVolumeClaim) error {
	if pv.Status.Phase != corev1.VolumeReleased || pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.UID == "" {
		return nil
	}
	if pvc != nil && pvc.UID == pv.Spec.ClaimRef.UID {
		return nil // the claim it was bound to is still there (being deleted)
	}
	patch := fmt.Sprintf(`{"metadata":{"resourceVersion":%q},"spec":{"claimRef":{"uid":null,"resourceVersion":null}}}`, pv.ResourceVersion)
	err := r.Patch(ctx, pv.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(patch)))
	switch {
	case err == nil:
		logf.FromContext(ctx).Info("PersistentVolume released by a deleted claim; opened for the next one", "persistentVolume", pv.Name)
		return nil
	case apierrors.IsConflict(err) || apierrors.IsNotFound(err):
		return nil // the cache is behind; the next look sees the PV as it is
	}
	return err
}

// deleteObj deletes o (uid precondition) unless it is being deleted.
func deleteObj(ctx context.Context, c client.Client, o client.Object) error {
	if !o.GetDeletionTimestamp().IsZero() {
		return nil
	}
	uid := o.GetUID()
	err := c.Delete(ctx, o, client.Preconditions{UID: &uid})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

func ownedBy(o metav1.Object, uid types.UID) bool {
	for _, ref := range o.GetOwnerReferences() {
		if ref.UID == uid {
			return true
		}
	}
	return false
}

// teardown deletes the Volume's PVC (if it owns it) and its PV; gone once
// the PV is gone (asked of the API server when the cache has none: a PV
// made a moment ago must not outlive the directory).
func (r *VolumeReconciler) teardown(ctx context.Context, v *Volume) (bool, error) {
	var pvc corev1.PersistentVolumeClaim
	if err := r.Get(ctx, types.NamespacedName{Namespace: v.Namespace, Name: v.Name}, &pvc); err == nil {
		if ownedBy(&pvc, v.UID) {
			if err := deleteObj(ctx, r.Client, &pvc); err != nil {
				return false, err
			}
		}
	} else if !apierrors.IsNotFound(err) {
		return false, err
	}
	name := pvName(v)
	var pv corev1.PersistentVolume
	if err := r.Get(ctx, types.NamespacedName{Name: name}, &pv); err != nil {
		if !apierrors.IsNotFound(err) {
			return false, err
		}
		if err := r.APIReader.Get(ctx, types.NamespacedName{Name: name}, &pv); err != nil {
			if apierrors.IsNotFound(err) {
				return true, nil
			}
			return false, err
		}
	}
	if pv.Labels[labelVolumeUID] != string(v.UID) {
		return true, nil // not ours
	}
	return false, deleteObj(ctx, r.Client, &pv)
}
