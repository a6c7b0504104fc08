// SPDX-License-Identifier: GPL-2.0
/*
 * The xenbus frontend of virtio_vproxy: the handshake of docs/PROTOCOL.md
 * (one shared page holding a register-access ring, one event channel,
 * addr-mode, protocol-version, feature-persistent), the register accesses
 * over that ring and the interrupt from the event channel.
 *
 * Register writes are posted: they are made from blk-mq's atomic context
 * (QueueNotify) and their answers are consumed whenever the ring is looked
 * at.  Reads wait for their answer, bounded by read_timeout_ms; a backend
 * that does not answer, answers out of order or closes marks the device
 * dead and its virtio device broken, so the guest never hangs on it.
 */
#include <linux/delay.h>
#include <linux/dma-map-ops.h>
#include <linux/dma-mapping.h>
#include <linux/interrupt.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/virtio_mmio.h>
#include <xen/events.h>
#include <xen/page.h>
#include <xen/xen.h>

#include "vproxy.h"

static char *addr_mode = "grant";
module_param(addr_mode, charp, 0644);
MODULE_PARM_DESC(addr_mode,
		 "grant (default; any backend domain) or gfn (zero copy; backend in dom0), read when a device is probed");

static unsigned int pool_kb = 4096;
module_param(pool_kb, uint, 0644);
MODULE_PARM_DESC(pool_kb,
		 "grant mode: KiB per device granted once and used for vrings and bounce buffers (default 4096)");

static unsigned int read_timeout_ms = 5000;
module_param(read_timeout_ms, uint, 0644);
MODULE_PARM_DESC(read_timeout_ms,
		 "how long a register read waits for the backend before the device is marked broken (default 5000)");

/* Pages of the gfn-mode pool: vrings and the rare bounce. */
#define VPX_GFN_POOL_PAGES	64
/* How long remove waits for the backend to close. */
#define VPX_CLOSE_TIMEOUT_MS	5000
/* Write answers refused that are logged before going quiet. */
#define VPX_WRITE_ERRORS_LOGGED	8

static struct vproxy_page_hdr *vpx_hdr(struct vpx_dev *vd)
{
	return vd->page;
}

/*
 * Breaking the virtio device takes virtio's vqs_list_lock, which virtio
 * also takes in process context without disabling interrupts: never from
 * the interrupt handler, always from a work item.
 */
static void vpx_break_work(struct work_struct *work)
{
	struct vpx_dev *vd = container_of(work, struct vpx_dev, break_work);
	struct vpx_vdev *vv = READ_ONCE(vd->vv);

	if (vv)
		virtio_break_device(&vv->vdev);
}

void vpx_mark_dead(struct vpx_dev *vd, const char *why)
{
	if (xchg(&vd->dead, true))
		return;
	dev_err(&vd->xb->dev, "backend unusable: %s\n", why);
	wake_up_all(&vd->read_wq);
	schedule_work(&vd->break_work);
}

/*
 * Take every answer the backend has produced.  Caller holds ring_lock.
 * Returns how many there were.
 */
static unsigned int vpx_consume(struct vpx_dev *vd)
{
	struct vproxy_front_ring *ring = &vd->ring;
	RING_IDX prod, cons;
	unsigned int n = 0;

	if (vd->dead || !vd->page)
		return 0;
	prod = READ_ONCE(ring->sring->rsp_prod);
	virt_rmb(); /* the answers before the index that publishes them */
	if (prod - ring->rsp_cons > ring->req_prod_pvt - ring->rsp_cons) {
		vpx_mark_dead(vd, "answer index beyond the requests");
		return 0;
	}
	for (cons = ring->rsp_cons; cons != prod; cons++, n++) {
		struct vproxy_mmio_rsp rsp;
		u32 shadow = vd->shadow[cons % VPX_RING_ENTRIES];

		RING_COPY_RESPONSE(ring, cons, &rsp);
		if (rsp.id != (u16)cons) {
			vpx_mark_dead(vd, "answer out of order");
			return n;
		}
		if (vd->awaiting && cons == vd->await_idx) {
			vd->await_status = rsp.status;
			vd->await_value = rsp.value;
			vd->await_done = true;
			wake_up(&vd->read_wq);
		} else if (rsp.status != VPROXY_ST_OK &&
			   vd->write_errors++ < VPX_WRITE_ERRORS_LOGGED) {
			dev_warn(&vd->xb->dev,
				 "write to 0x%03x refused (status %u)\n",
				 shadow & 0xffff, rsp.status);
		}
	}
	ring->rsp_cons = prod;
	return n;
}

/*
 * Queue one request.  Caller holds ring_lock with interrupts off.  A full
 * ring (128 posted writes the backend has not answered yet) is drained by
 * polling, bounded by the read timeout.
 */
static int vpx_push(struct vpx_dev *vd, u8 op, u32 offset, unsigned int size,
		    u64 value, RING_IDX *idx)
{
	struct vproxy_front_ring *ring = &vd->ring;
	struct vproxy_mmio_req *req;
	unsigned long waited_us = 0;
	RING_IDX i;
	int notify;

	if (vd->dead || !vd->page)
		return -ENODEV;
	while (RING_FULL(ring)) {
		vpx_consume(vd);
		if (vd->dead)
			return -ENODEV;
		if (!RING_FULL(ring))
			break;
		ring->sring->rsp_event = ring->rsp_cons + 1;
		virt_mb(); /* rsp_event is out before we look at rsp_prod */
		if (waited_us >= vd->read_timeout_ms * 1000UL) {
			vpx_mark_dead(vd, "register ring full and no answers");
			return -ETIMEDOUT;
		}
		udelay(10);
		waited_us += 10;
	}
	i = ring->req_prod_pvt;
	req = RING_GET_REQUEST(ring, i);
	req->op = op;
	req->size = size;
	req->id = (u16)i;
	req->offset = offset;
	req->value = value;
	vd->shadow[i % VPX_RING_ENTRIES] = (u32)op << 16 | offset;
	ring->req_prod_pvt = i + 1;
	RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(ring, notify);
	if (notify) {
		atomic64_inc(&vd->stats.evtchn_sends);
		notify_remote_via_irq(vd->irq);
	}
	*idx = i;
	return 0;
}

static u64 vpx_size_mask(unsigned int size)
{
	return size >= 8 ? ~0ULL : (1ULL << (size * 8)) - 1;
}

int vpx_reg_read(struct vpx_dev *vd, u32 offset, unsigned int size, u64 *val)
{
	unsigned long flags;
	bool done = false;
	RING_IDX idx;
	u8 status = 0;
	long left;
	int r;

	*val = vpx_size_mask(size);
	might_sleep();
	if (offset == VIRTIO_MMIO_INTERRUPT_STATUS && size == 4) {
		*val = READ_ONCE(vpx_hdr(vd)->irq_status);
		return 0;
	}
	mutex_lock(&vd->read_lock);
	spin_lock_irqsave(&vd->ring_lock, flags);
	r = vpx_push(vd, VPROXY_OP_READ, offset, size, 0, &idx);
	if (!r) {
		vd->await_idx = idx;
		vd->await_done = false;
		vd->awaiting = true;
		/*
		 * Be notified for this answer only, not for the posted
		 * writes' answers before it.
		 */
		vd->ring.sring->rsp_event = idx + 1;
		virt_mb(); /* rsp_event is out before we look at rsp_prod */
		vpx_consume(vd);
	}
	spin_unlock_irqrestore(&vd->ring_lock, flags);
	if (r)
		goto out;
	atomic64_inc(&vd->stats.reads);
	left = wait_event_timeout(vd->read_wq,
				  READ_ONCE(vd->await_done) || READ_ONCE(vd->dead),
				  msecs_to_jiffies(vd->read_timeout_ms));
	spin_lock_irqsave(&vd->ring_lock, flags);
	if (!vd->await_done)
		vpx_consume(vd); /* a notification may have been lost */
	vd->awaiting = false;
	done = vd->await_done;
	status = vd->await_status;
	if (done)
		*val = vd->await_value & vpx_size_mask(size);
	spin_unlock_irqrestore(&vd->ring_lock, flags);
	if (!done) {
		if (!left && !vd->dead) {
			dev_err(&vd->xb->dev,
				"no answer to the read of 0x%03x in %u ms\n",
				offset, vd->read_timeout_ms);
			vpx_mark_dead(vd, "register read timed out");
		}
		r = vd->dead ? -ENODEV : -ETIMEDOUT;
	} else if (status != VPROXY_ST_OK) {
		dev_dbg(&vd->xb->dev, "read of 0x%03x refused (status %u)\n",
			offset, status);
		*val = vpx_size_mask(size);
		r = -EIO;
	}
out:
	mutex_unlock(&vd->read_lock);
	return r;
}

void vpx_reg_write(struct vpx_dev *vd, u32 offset, unsigned int size, u64 val)
{
	unsigned long flags;
	RING_IDX idx;

	if (offset == VIRTIO_MMIO_INTERRUPT_ACK && size == 4) {
		/* Answered locally: the backend only ever sets bits. */
		__atomic_fetch_and(&vpx_hdr(vd)->irq_status, ~(u32)val,
				   __ATOMIC_SEQ_CST);
		return;
	}
	spin_lock_irqsave(&vd->ring_lock, flags);
	if (!vpx_push(vd, VPROXY_OP_WRITE, offset, size,
		      val & vpx_size_mask(size), &idx))
		atomic64_inc(&vd->stats.writes);
	spin_unlock_irqrestore(&vd->ring_lock, flags);
}

static irqreturn_t vpx_interrupt(int irq, void *data)
{
	struct vpx_dev *vd = data;
	unsigned int eoi = XEN_EOI_FLAG_SPURIOUS;
	unsigned long flags;
	u32 status;

	spin_lock_irqsave(&vd->ring_lock, flags);
	if (vpx_consume(vd))
		eoi = 0;
	spin_unlock_irqrestore(&vd->ring_lock, flags);
	/* Reading and clearing InterruptStatus is one atomic exchange. */
	status = xchg(&vpx_hdr(vd)->irq_status, 0);
	if (status) {
		eoi = 0;
		atomic64_inc(&vd->stats.irqs);
		vpx_vio_interrupt(vd, irq, status);
	} else if (eoi) {
		atomic64_inc(&vd->stats.spurious);
	}
	xen_irq_lateeoi(irq, eoi);
	return IRQ_HANDLED;
}

/* The backend's own explanation, or fallback. */
static void vpx_backend_error(struct vpx_dev *vd, const char *fallback)
{
	char *text = xenbus_read(XBT_NIL, vd->xb->otherend, "error", NULL);

	if (IS_ERR(text)) {
		vpx_mark_dead(vd, fallback);
		return;
	}
	vpx_mark_dead(vd, text);
	kfree(text);
}

/*
 * Write our state directly: xenbus_switch_state() skips a write when its
 * cached state already matches, which is wrong when starting over.
 */
static void vpx_write_state(struct vpx_dev *vd, enum xenbus_state state)
{
	int err = xenbus_printf(XBT_NIL, vd->xb->nodename, "state", "%d",
				state);

	if (err)
		dev_warn(&vd->xb->dev, "cannot write state %d: %d\n", state,
			 err);
	vd->xb->state = state;
}

/*
 * Handshake step 3: page, event channel, pool; everything published with
 * state Initialised in one transaction.
 */
static int vpx_publish(struct vpx_dev *vd)
{
	struct xenbus_device *xb = vd->xb;
	struct vproxy_page_hdr *hdr;
	struct vproxy_sring *sring;
	struct xenbus_transaction xbt;
	unsigned long ring_ref;
	void *page;
	int err;

	err = vpx_pool_init(&vd->pool, vd->grant, xb->otherend_id,
			    vd->grant ? DIV_ROUND_UP(pool_kb, PAGE_SIZE / 1024) :
					VPX_GFN_POOL_PAGES);
	if (err) {
		xenbus_dev_fatal(xb, err, "allocating the shared pool");
		return err;
	}
	err = xenbus_setup_ring(xb, GFP_KERNEL, &page, 1, &vd->ring_gref);
	if (err)
		goto fail_pool;
	memset(page, 0, XEN_PAGE_SIZE);
	hdr = page;
	hdr->magic = cpu_to_le32(VPROXY_PAGE_MAGIC);
	hdr->version = cpu_to_le32(VPROXY_PROTO_VERSION);
	sring = page + VPROXY_RING_OFFSET;
	SHARED_RING_INIT(sring);
	FRONT_RING_INIT(&vd->ring, sring, VPROXY_RING_BYTES);
	if (RING_SIZE(&vd->ring) != VPX_RING_ENTRIES) {
		err = -EINVAL;
		xenbus_dev_fatal(xb, err, "ring of %u slots",
				 RING_SIZE(&vd->ring));
		goto fail_ring;
	}

	err = xenbus_alloc_evtchn(xb, &vd->port);
	if (err)
		goto fail_ring;
	err = bind_evtchn_to_irqhandler_lateeoi(vd->port, vpx_interrupt, 0,
						dev_name(&xb->dev), vd);
	if (err < 0) {
		xenbus_free_evtchn(xb, vd->port);
		xenbus_dev_fatal(xb, err, "binding the event channel");
		goto fail_ring;
	}
	vd->irq = err;
	/* The page is complete before the backend can learn where it is. */
	wmb();
	vd->page = page;

	ring_ref = vd->grant ? vd->ring_gref : virt_to_gfn(page);
again:
	err = xenbus_transaction_start(&xbt);
	if (err) {
		xenbus_dev_fatal(xb, err, "starting a transaction");
		goto fail_irq;
	}
	err = xenbus_printf(xbt, xb->nodename, "ring-ref", "%lu", ring_ref);
	if (!err)
		err = xenbus_printf(xbt, xb->nodename, "event-channel", "%u",
				    vd->port);
	if (!err)
		err = xenbus_printf(xbt, xb->nodename, "addr-mode", "%s",
				    vd->grant ? "grant" : "gfn");
	if (!err)
		err = xenbus_printf(xbt, xb->nodename, "protocol-version",
				    "%u", VPROXY_PROTO_VERSION);
	/* The pool stays granted to the same pages until we disconnect. */
	if (!err && vd->grant)
		err = xenbus_printf(xbt, xb->nodename, "feature-persistent",
				    "%u", 1);
	if (!err)
		err = xenbus_printf(xbt, xb->nodename, "state", "%d",
				    XenbusStateInitialised);
	if (err) {
		xenbus_transaction_end(xbt, 1);
		xenbus_dev_fatal(xb, err, "publishing the ring");
		goto fail_irq;
	}
	err = xenbus_transaction_end(xbt, 0);
	if (err == -EAGAIN)
		goto again;
	if (err) {
		xenbus_dev_fatal(xb, err, "completing the transaction");
		goto fail_irq;
	}
	xb->state = XenbusStateInitialised;
	dev_info(&xb->dev, "published: %s mode, ring-ref %lu, port %u\n",
		 vd->grant ? "grant" : "gfn", ring_ref, vd->port);
	return 0;

fail_irq:
	vd->page = NULL;
	unbind_from_irqhandler(vd->irq, vd);
	vd->irq = 0;
fail_ring:
	xenbus_teardown_ring(&page, 1, &vd->ring_gref);
fail_pool:
	vpx_pool_destroy(&vd->pool);
	return err;
}

/* After the backend let go of the page: port, page, pool. */
static void vpx_release(struct vpx_dev *vd)
{
	void *page = vd->page;

	if (vd->irq > 0)
		unbind_from_irqhandler(vd->irq, vd); /* closes the port */
	vd->irq = 0;
	vd->page = NULL;
	if (page)
		xenbus_teardown_ring(&page, 1, &vd->ring_gref);
	vpx_pool_destroy(&vd->pool);
}

static void vpx_connected(struct vpx_dev *vd)
{
	int err;

	err = xenbus_switch_state(vd->xb, XenbusStateConnected);
	if (err)
		return;
	err = vpx_vio_register(vd);
	if (err)
		dev_err(&vd->xb->dev, "no virtio device: %d\n", err);
}

static void vpx_backend_changed(struct xenbus_device *xb,
				enum xenbus_state be_state)
{
	struct vpx_dev *vd = dev_get_drvdata(&xb->dev);

	dev_dbg(&xb->dev, "backend %s, we are %s\n",
		xenbus_strstate(be_state), xenbus_strstate(xb->state));
	if (!vd || vd->removing)
		return;
	switch (be_state) {
	case XenbusStateInitWait:
		if (xb->state == XenbusStateInitialising && !vd->page &&
		    !vd->resetting && vpx_publish(vd))
			vpx_mark_dead(vd, "cannot publish the ring");
		break;
	case XenbusStateInitialised:
	case XenbusStateConnected:
		if (xb->state == XenbusStateInitialised) {
			vpx_connected(vd);
		} else if (xb->state == XenbusStateInitialising && !vd->page &&
			   !vd->resetting) {
			/* Still connected to an earlier session of ours. */
			dev_info(&xb->dev, "backend in a stale session: resetting it\n");
			vd->resetting = true;
			vpx_write_state(vd, XenbusStateClosing);
		}
		break;
	case XenbusStateClosing:
		if (vd->page) {
			vpx_backend_error(vd, "backend closing");
			if (xb->state != XenbusStateClosing &&
			    xb->state != XenbusStateClosed)
				xenbus_switch_state(xb, XenbusStateClosing);
		}
		break;
	case XenbusStateClosed:
	case XenbusStateUnknown:
		if (vd->resetting) {
			vd->resetting = false;
			vpx_write_state(vd, XenbusStateInitialising);
		} else if (vd->page) {
			vpx_backend_error(vd, "backend closed");
			if (xb->state != XenbusStateClosed)
				xenbus_switch_state(xb, XenbusStateClosed);
		}
		/*
		 * Before we published, a Closed backend is still leaving an
		 * earlier session (docs/PROTOCOL.md: reconnect).
		 */
		break;
	default:
		break;
	}
}

static ssize_t stats_show(struct device *dev, struct device_attribute *attr,
			  char *buf)
{
	struct vpx_dev *vd = dev_get_drvdata(dev);
	struct vpx_stats *s = &vd->stats;

	return sysfs_emit(buf,
			  "mode %s kicks %lld evtchn_sends %lld irqs %lld spurious %lld reads %lld writes %lld direct_maps %lld bounce_maps %lld pool_full %lld\n",
			  vd->grant ? "grant" : "gfn",
			  atomic64_read(&s->kicks),
			  atomic64_read(&s->evtchn_sends),
			  atomic64_read(&s->irqs), atomic64_read(&s->spurious),
			  atomic64_read(&s->reads), atomic64_read(&s->writes),
			  atomic64_read(&s->direct_maps),
			  atomic64_read(&s->bounce_maps),
			  atomic64_read(&s->pool_full));
}
static DEVICE_ATTR_RO(stats);

static struct attribute *vpx_attrs[] = {
	&dev_attr_stats.attr,
	NULL,
};
ATTRIBUTE_GROUPS(vpx);

static int vpx_probe(struct xenbus_device *xb,
		     const struct xenbus_device_id *id)
{
	struct vpx_dev *vd;
	int state, err;

	if (strcmp(addr_mode, "grant") && strcmp(addr_mode, "gfn")) {
		dev_err(&xb->dev, "addr_mode '%s': grant or gfn\n", addr_mode);
		return -EINVAL;
	}
	if (!strcmp(addr_mode, "gfn") && !xen_pv_domain()) {
		/*
		 * An HVM/PVH guest's gfns would do too, but only PV is
		 * tested; say so instead of guessing.
		 */
		dev_warn(&xb->dev, "gfn mode is tested in PV guests only\n");
	}
	vd = kzalloc(sizeof(*vd), GFP_KERNEL);
	if (!vd)
		return -ENOMEM;
	vd->xb = xb;
	vd->grant = !strcmp(addr_mode, "grant");
	vd->read_timeout_ms = max(read_timeout_ms, 100U);
	spin_lock_init(&vd->ring_lock);
	mutex_init(&vd->read_lock);
	init_waitqueue_head(&vd->read_wq);
	INIT_WORK(&vd->break_work, vpx_break_work);
	spin_lock_init(&vd->vqs_lock);
	INIT_LIST_HEAD(&vd->vqs);
	spin_lock_init(&vd->pool.lock);
	vd->pool.grant = vd->grant;

	/* virtio_ring maps through the parent's DMA API: ours. */
	err = dma_coerce_mask_and_coherent(&xb->dev, DMA_BIT_MASK(64));
	if (err) {
		kfree(vd);
		return err;
	}
	set_dma_ops(&xb->dev, &vpx_dma_ops);
	dev_set_drvdata(&xb->dev, vd);

	/*
	 * Start over from Initialising whatever an earlier session left;
	 * the backend answers with InitWait (vpx_backend_changed).
	 */
	if (xenbus_scanf(XBT_NIL, xb->nodename, "state", "%d", &state) != 1 ||
	    state != XenbusStateInitialising)
		vpx_write_state(vd, XenbusStateInitialising);
	dev_info(&xb->dev, "probed, %s mode, backend domain %d\n",
		 vd->grant ? "grant" : "gfn", xb->otherend_id);
	return 0;
}

/*
 * Wait (bounded) for the backend to be Closed or gone; polled, because
 * remove may run in the xenwatch thread that delivers watch events.
 */
static void vpx_wait_backend_closed(struct vpx_dev *vd)
{
	unsigned long deadline = jiffies + msecs_to_jiffies(VPX_CLOSE_TIMEOUT_MS);

	for (;;) {
		enum xenbus_state s = xenbus_read_driver_state(vd->xb->otherend);

		if (s == XenbusStateClosed || s == XenbusStateUnknown)
			return;
		if (time_after(jiffies, deadline)) {
			dev_warn(&vd->xb->dev,
				 "backend did not close in %u ms (state %s)\n",
				 VPX_CLOSE_TIMEOUT_MS, xenbus_strstate(s));
			return;
		}
		msleep(20);
	}
}

static void vpx_remove(struct xenbus_device *xb)
{
	struct vpx_dev *vd = dev_get_drvdata(&xb->dev);

	vd->removing = true;
	/* The driver resets the device while the backend still serves. */
	vpx_vio_unregister(vd);
	if (vd->page) {
		if (xb->state != XenbusStateClosing &&
		    xb->state != XenbusStateClosed)
			xenbus_switch_state(xb, XenbusStateClosing);
		vpx_wait_backend_closed(vd);
	}
	vpx_release(vd);
	if (xb->state != XenbusStateClosed)
		xenbus_switch_state(xb, XenbusStateClosed);
	set_dma_ops(&xb->dev, NULL);
	xb->dev.coherent_dma_mask = 0;
	xb->dev.dma_mask = NULL;
	dev_set_drvdata(&xb->dev, NULL);
	cancel_work_sync(&vd->break_work);
	kfree(vd);
}

static const struct xenbus_device_id vpx_ids[] = {
	{ "vproxy" },
	{ "" }
};

static struct xenbus_driver vpx_driver = {
	.ids = vpx_ids,
	.probe = vpx_probe,
	.remove = vpx_remove,
	.otherend_changed = vpx_backend_changed,
	.driver.dev_groups = vpx_groups,
	.not_essential = true,
};

static int __init vpx_init(void)
{
	if (!xen_domain())
		return -ENODEV;
	BUILD_BUG_ON(sizeof(struct vproxy_page_hdr) != VPROXY_RING_OFFSET);
	BUILD_BUG_ON(sizeof(struct vproxy_mmio_req) != 16);
	BUILD_BUG_ON(sizeof(struct vproxy_mmio_rsp) != 16);
	BUILD_BUG_ON(__CONST_RING_SIZE(vproxy, VPROXY_RING_BYTES) !=
		     VPX_RING_ENTRIES);
	return xenbus_register_frontend(&vpx_driver);
}
module_init(vpx_init);

static void __exit vpx_exit(void)
{
	xenbus_unregister_driver(&vpx_driver);
}
module_exit(vpx_exit);

MODULE_DESCRIPTION("virtio transport over the vproxy protocol (Xen frontend)");
MODULE_LICENSE("GPL");
MODULE_ALIAS("xen:vproxy");
