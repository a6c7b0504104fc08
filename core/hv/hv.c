/* SPDX-License-Identifier: MIT */
/* Choosing a hypervisor layer by name, and settings common to all. */
#include "hv.h"
#include "log.h"

#include <errno.h>
#include <string.h>

struct vp_hv *vp_hv_open(const char *name, const char *run_dir)
{
	if (!name) {
		vp_err("no hypervisor layer named (expected \"sim\" or \"xen\")");
		return NULL;
	}
	if (strcmp(name, "sim") == 0) {
		if (!run_dir) {
			vp_err("the sim hypervisor layer needs a run directory");
			return NULL;
		}
		return vp_hv_sim_open(run_dir);
	}
	if (strcmp(name, "xen") == 0)
		return vp_hv_xen_open();
	vp_err("unknown hypervisor layer \"%s\" (expected \"sim\" or \"xen\")", name);
	return NULL;
}

void vp_hv_set_self_domid(struct vp_hv *hv, uint16_t domid)
{
	/* Xen knows which domain we are; only the sim layer must be told
	 * (it answers -EINVAL for any other handle). */
	if (hv && vp_hv_sim_set_self_domid(hv, domid) == -EBUSY)
		vp_err("sim: cannot become domain %u: guests were already contacted",
		       domid);
}

void vp_hv_set_domain_cb(struct vp_hv *hv, vp_hv_domain_cb *cb, void *arg)
{
	hv->domain_cb = cb;
	hv->domain_cb_arg = arg;
}

int vp_hv_domain_ready(struct vp_hv *hv, uint16_t dom)
{
	return hv->ops->domain_ready ? hv->ops->domain_ready(hv, dom) : 0;
}
