// SPDX-License-Identifier: GPL-2.0
/*
 * The virtio side of virtio_vproxy: a virtio_device whose config ops are
 * virtio-mmio version 2 register accesses sent over the vproxy ring, so
 * that Linux's own virtio drivers (virtio_blk) drive a vproxy device.
 * InterruptStatus and InterruptACK never cross the ring: the interrupt
 * handler takes the bits from the shared page.
 */
#include <linux/dma-mapping.h>
#include <linux/interrupt.h>
#include <linux/slab.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>

#include "vproxy.h"

#define VPX_MMIO_MAGIC		0x74726976
#define VPX_MMIO_VERSION	2

static struct vpx_dev *to_vd(struct virtio_device *vdev)
{
	return container_of(vdev, struct vpx_vdev, vdev)->vd;
}

static u32 vpx_read32(struct vpx_dev *vd, u32 offset)
{
	u64 v;

	vpx_reg_read(vd, offset, 4, &v);
	return v;
}

static void vpx_write32(struct vpx_dev *vd, u32 offset, u32 v)
{
	vpx_reg_write(vd, offset, 4, v);
}

static void vpx_get(struct virtio_device *vdev, unsigned int offset,
		    void *buf, unsigned int len)
{
	struct vpx_dev *vd = to_vd(vdev);
	u32 base = VIRTIO_MMIO_CONFIG + offset;
	__le16 w;
	__le32 l;
	__le64 q;
	u64 v;
	u8 b;

	switch (len) {
	case 1:
		vpx_reg_read(vd, base, 1, &v);
		b = v;
		memcpy(buf, &b, 1);
		break;
	case 2:
		vpx_reg_read(vd, base, 2, &v);
		w = cpu_to_le16(v);
		memcpy(buf, &w, 2);
		break;
	case 4:
		vpx_reg_read(vd, base, 4, &v);
		l = cpu_to_le32(v);
		memcpy(buf, &l, 4);
		break;
	case 8:
		vpx_reg_read(vd, base, 8, &v);
		q = cpu_to_le64(v);
		memcpy(buf, &q, 8);
		break;
	default:
		for (; len; len--, base++, buf++) {
			vpx_reg_read(vd, base, 1, &v);
			*(u8 *)buf = v;
		}
	}
}

static void vpx_set(struct virtio_device *vdev, unsigned int offset,
		    const void *buf, unsigned int len)
{
	struct vpx_dev *vd = to_vd(vdev);
	u32 base = VIRTIO_MMIO_CONFIG + offset;
	__le16 w;
	__le32 l;
	__le64 q;

	switch (len) {
	case 1:
		vpx_reg_write(vd, base, 1, *(const u8 *)buf);
		break;
	case 2:
		memcpy(&w, buf, 2);
		vpx_reg_write(vd, base, 2, le16_to_cpu(w));
		break;
	case 4:
		memcpy(&l, buf, 4);
		vpx_reg_write(vd, base, 4, le32_to_cpu(l));
		break;
	case 8:
		memcpy(&q, buf, 8);
		vpx_reg_write(vd, base, 8, le64_to_cpu(q));
		break;
	default:
		for (; len; len--, base++, buf++)
			vpx_reg_write(vd, base, 1, *(const u8 *)buf);
	}
}

static u32 vpx_generation(struct virtio_device *vdev)
{
	return vpx_read32(to_vd(vdev), VIRTIO_MMIO_CONFIG_GENERATION);
}

static u8 vpx_get_status(struct virtio_device *vdev)
{
	return vpx_read32(to_vd(vdev), VIRTIO_MMIO_STATUS) & 0xff;
}

static void vpx_set_status(struct virtio_device *vdev, u8 status)
{
	/* Zero is a reset: vpx_reset() */
	WARN_ON(status == 0);
	vpx_write32(to_vd(vdev), VIRTIO_MMIO_STATUS, status);
}

static void vpx_reset(struct virtio_device *vdev)
{
	struct vpx_dev *vd = to_vd(vdev);

	vpx_write32(vd, VIRTIO_MMIO_STATUS, 0);
	/*
	 * The backend serves the ring in order: once this read is answered,
	 * the reset is done (or the backend is gone and so is the device).
	 */
	if (vpx_read32(vd, VIRTIO_MMIO_STATUS) != 0 && !vd->dead)
		dev_warn(&vdev->dev, "device did not reset\n");
}

static u64 vpx_get_features(struct virtio_device *vdev)
{
	struct vpx_dev *vd = to_vd(vdev);
	u64 features;

	vpx_write32(vd, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	features = vpx_read32(vd, VIRTIO_MMIO_DEVICE_FEATURES);
	features <<= 32;
	vpx_write32(vd, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	features |= vpx_read32(vd, VIRTIO_MMIO_DEVICE_FEATURES);
	return features;
}

static int vpx_finalize_features(struct virtio_device *vdev)
{
	struct vpx_dev *vd = to_vd(vdev);

	vring_transport_features(vdev);
	if (!__virtio_test_bit(vdev, VIRTIO_F_VERSION_1)) {
		dev_err(&vdev->dev, "device does not offer VIRTIO_F_VERSION_1\n");
		return -EINVAL;
	}
	/* Grant addresses are not guest-physical: the device must know. */
	if (vd->grant && !__virtio_test_bit(vdev, VIRTIO_F_ACCESS_PLATFORM)) {
		dev_err(&vdev->dev,
			"grant mode needs VIRTIO_F_ACCESS_PLATFORM, not offered\n");
		return -EINVAL;
	}
	vpx_write32(vd, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	vpx_write32(vd, VIRTIO_MMIO_DRIVER_FEATURES, vdev->features >> 32);
	vpx_write32(vd, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	vpx_write32(vd, VIRTIO_MMIO_DRIVER_FEATURES, (u32)vdev->features);
	return 0;
}

static bool vpx_notify(struct virtqueue *vq)
{
	struct vpx_dev *vd = to_vd(vq->vdev);

	if (READ_ONCE(vd->dead))
		return false;
	atomic64_inc(&vd->stats.kicks);
	vpx_write32(vd, VIRTIO_MMIO_QUEUE_NOTIFY, vq->index);
	return true;
}

void vpx_vio_interrupt(struct vpx_dev *vd, int irq, u32 status)
{
	struct vpx_vdev *vv = READ_ONCE(vd->vv);
	struct vpx_vq_info *info;
	unsigned long flags;

	if ((status & VIRTIO_MMIO_INT_CONFIG) && vv)
		virtio_config_changed(&vv->vdev);
	if (status & VIRTIO_MMIO_INT_VRING) {
		spin_lock_irqsave(&vd->vqs_lock, flags);
		list_for_each_entry(info, &vd->vqs, node)
			vring_interrupt(irq, info->vq);
		spin_unlock_irqrestore(&vd->vqs_lock, flags);
	}
}

static void vpx_del_vq(struct vpx_dev *vd, struct virtqueue *vq)
{
	struct vpx_vq_info *info = vq->priv;
	unsigned long flags;

	spin_lock_irqsave(&vd->vqs_lock, flags);
	list_del(&info->node);
	spin_unlock_irqrestore(&vd->vqs_lock, flags);

	vpx_write32(vd, VIRTIO_MMIO_QUEUE_SEL, vq->index);
	vpx_write32(vd, VIRTIO_MMIO_QUEUE_READY, 0);
	/* Answered in order: the backend has let go of the queue. */
	if (vpx_read32(vd, VIRTIO_MMIO_QUEUE_READY) && !vd->dead)
		dev_warn(&vq->vdev->dev, "queue %u still ready\n", vq->index);
	vring_del_virtqueue(vq);
	kfree(info);
}

static void vpx_del_vqs(struct virtio_device *vdev)
{
	struct vpx_dev *vd = to_vd(vdev);
	struct virtqueue *vq, *n;

	list_for_each_entry_safe(vq, n, &vdev->vqs, list)
		vpx_del_vq(vd, vq);
}

static void vpx_write_addr(struct vpx_dev *vd, u32 low, dma_addr_t addr)
{
	vpx_write32(vd, low, lower_32_bits(addr));
	vpx_write32(vd, low + 4, upper_32_bits(addr));
}

static struct virtqueue *vpx_setup_vq(struct virtio_device *vdev,
				      unsigned int index,
				      void (*callback)(struct virtqueue *vq),
				      const char *name, bool ctx)
{
	struct vpx_dev *vd = to_vd(vdev);
	struct vpx_vq_info *info;
	struct virtqueue *vq;
	unsigned long flags;
	unsigned int num;

	vpx_write32(vd, VIRTIO_MMIO_QUEUE_SEL, index);
	if (vpx_read32(vd, VIRTIO_MMIO_QUEUE_READY))
		return ERR_PTR(vd->dead ? -ENODEV : -ENOENT);
	num = vpx_read32(vd, VIRTIO_MMIO_QUEUE_NUM_MAX);
	if (num == 0 || num == ~0U)
		return ERR_PTR(vd->dead ? -ENODEV : -ENOENT);
	info = kzalloc(sizeof(*info), GFP_KERNEL);
	if (!info)
		return ERR_PTR(-ENOMEM);
	/*
	 * Version 2 places the three parts independently, so cache-line
	 * alignment is enough; with it a 128-entry split ring fits one page,
	 * which is what gfn mode can give a backend (a PV guest's frames are
	 * not contiguous to it).  may_reduce_num lets virtio_ring fall back.
	 */
	vq = vring_create_virtqueue(index, num, SMP_CACHE_BYTES, vdev, true,
				    true, ctx, vpx_notify, callback, name);
	if (!vq) {
		kfree(info);
		return ERR_PTR(-ENOMEM);
	}
	vq->priv = info;
	info->vq = vq;
	vpx_write32(vd, VIRTIO_MMIO_QUEUE_NUM, virtqueue_get_vring_size(vq));
	vpx_write_addr(vd, VIRTIO_MMIO_QUEUE_DESC_LOW,
		       virtqueue_get_desc_addr(vq));
	vpx_write_addr(vd, VIRTIO_MMIO_QUEUE_AVAIL_LOW,
		       virtqueue_get_avail_addr(vq));
	vpx_write_addr(vd, VIRTIO_MMIO_QUEUE_USED_LOW,
		       virtqueue_get_used_addr(vq));
	vpx_write32(vd, VIRTIO_MMIO_QUEUE_READY, 1);

	spin_lock_irqsave(&vd->vqs_lock, flags);
	list_add(&info->node, &vd->vqs);
	spin_unlock_irqrestore(&vd->vqs_lock, flags);
	dev_dbg(&vdev->dev, "queue %u: %u entries\n", index,
		virtqueue_get_vring_size(vq));
	return vq;
}

static int vpx_find_vqs(struct virtio_device *vdev, unsigned int nvqs,
			struct virtqueue *vqs[], vq_callback_t *callbacks[],
			const char * const names[], const bool *ctx,
			struct irq_affinity *desc)
{
	unsigned int i, queue = 0;

	for (i = 0; i < nvqs; i++) {
		if (!names[i]) {
			vqs[i] = NULL;
			continue;
		}
		vqs[i] = vpx_setup_vq(vdev, queue++, callbacks[i], names[i],
				      ctx ? ctx[i] : false);
		if (IS_ERR(vqs[i])) {
			int err = PTR_ERR(vqs[i]);

			vpx_del_vqs(vdev);
			return err;
		}
	}
	return 0;
}

static void vpx_synchronize_cbs(struct virtio_device *vdev)
{
	synchronize_irq(to_vd(vdev)->irq);
}

static const char *vpx_bus_name(struct virtio_device *vdev)
{
	return dev_name(&to_vd(vdev)->xb->dev);
}

static const struct virtio_config_ops vpx_config_ops = {
	.get = vpx_get,
	.set = vpx_set,
	.generation = vpx_generation,
	.get_status = vpx_get_status,
	.set_status = vpx_set_status,
	.reset = vpx_reset,
	.find_vqs = vpx_find_vqs,
	.del_vqs = vpx_del_vqs,
	.synchronize_cbs = vpx_synchronize_cbs,
	.get_features = vpx_get_features,
	.finalize_features = vpx_finalize_features,
	.bus_name = vpx_bus_name,
};

static void vpx_vdev_release(struct device *dev)
{
	struct virtio_device *vdev = dev_to_virtio(dev);

	kfree(container_of(vdev, struct vpx_vdev, vdev));
}

int vpx_vio_register(struct vpx_dev *vd)
{
	struct vpx_vdev *vv;
	u32 magic, version;
	int err;

	magic = vpx_read32(vd, VIRTIO_MMIO_MAGIC_VALUE);
	version = vpx_read32(vd, VIRTIO_MMIO_VERSION);
	if (vd->dead)
		return -ENODEV;
	if (magic != VPX_MMIO_MAGIC || version != VPX_MMIO_VERSION) {
		dev_err(&vd->xb->dev, "not a virtio-mmio v2 device (0x%x, %u)\n",
			magic, version);
		return -ENODEV;
	}
	vv = kzalloc(sizeof(*vv), GFP_KERNEL);
	if (!vv)
		return -ENOMEM;
	vv->vd = vd;
	vv->vdev.id.device = vpx_read32(vd, VIRTIO_MMIO_DEVICE_ID);
	vv->vdev.id.vendor = vpx_read32(vd, VIRTIO_MMIO_VENDOR_ID);
	vv->vdev.dev.parent = &vd->xb->dev;
	vv->vdev.dev.release = vpx_vdev_release;
	vv->vdev.config = &vpx_config_ops;
	/*
	 * The driver's probe sets up queues (interrupts reach them through
	 * vd->vqs); configuration changes reach it once it is registered.
	 */
	err = register_virtio_device(&vv->vdev);
	if (err) {
		put_device(&vv->vdev.dev);
		return err;
	}
	WRITE_ONCE(vd->vv, vv);
	if (vd->dead)
		virtio_break_device(&vv->vdev);
	return 0;
}

void vpx_vio_unregister(struct vpx_dev *vd)
{
	struct vpx_vdev *vv = vd->vv;

	if (!vv)
		return;
	WRITE_ONCE(vd->vv, NULL);
	if (vd->irq > 0)
		synchronize_irq(vd->irq);
	/* A dead device's queues break on their next kick anyway. */
	cancel_work_sync(&vd->break_work);
	unregister_virtio_device(&vv->vdev);
}
