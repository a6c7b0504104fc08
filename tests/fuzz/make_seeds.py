#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the seed corpora of the fuzzers (tests/fuzz/corpus/<name>/).

Each seed is a small, mostly well-formed input in the layout the harness
documents at its top, so the fuzzer starts from inputs that reach deep
into the code; the fuzzer mutates them from there.  Run it after changing
an input layout:  python3 tests/fuzz/make_seeds.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
GRANT = 1 << 63
F_NEXT, F_WRITE, F_INDIRECT = 1, 2, 4


def save(harness, name, data):
    d = os.path.join(HERE, "corpus", harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def u8(v): return struct.pack("<B", v & 0xff)
def u16(v): return struct.pack("<H", v & 0xffff)
def u32(v): return struct.pack("<I", v & 0xffffffff)
def u64(v): return struct.pack("<Q", v & 0xffffffffffffffff)


def desc(addr, length, flags, nxt=0):
    return struct.pack("<QIHH", addr, length, flags, nxt)


class Ram:
    """A guest RAM image starting at guest address 0."""

    def __init__(self):
        self.b = bytearray()

    def put(self, at, data):
        if len(self.b) < at + len(data):
            self.b.extend(b"\0" * (at + len(data) - len(self.b)))
        self.b[at:at + len(data)] = data

    def image(self):
        return u16(len(self.b)) + bytes(self.b)


# ---- virtqueue ----
# Rings in page 0: desc at 0x000, avail at 0x400, used at 0x800 (room for
# 64 entries); buffers from page 16 (gfn 0x10000, grant ref 16).

def vq_seed(cfg, lognum, chains, ops, grant_overrides=(), indirect_tables=(),
            avail_extra=b"", ring=(0x000, 0x400, 0x800), buf_base=None,
            used_event=None):
    grant = cfg & 1
    num = 1 << lognum
    ram = Ram()
    # chains: list of (head, [ (addr, len, flags, next) ... ] at indices)
    for idx, entries in chains:
        for i, (a, l, f, n) in enumerate(entries):
            ram.put(ring[0] + 16 * (idx + i), desc(a, l, f, n))
    for at, entries in indirect_tables:
        for i, (a, l, f, n) in enumerate(entries):
            ram.put(at + 16 * i, desc(a, l, f, n))
    heads = [idx for idx, _ in chains]
    avail = u16(0) + u16(len(heads)) + b"".join(u16(h) for h in heads)
    ram.put(ring[1], avail + avail_extra)
    if used_event is not None:
        ram.put(ring[1] + 4 + 2 * num, u16(used_event))
    base = GRANT if grant else 0
    out = u8(cfg) + u8(lognum)
    out += u32(ring[0]) + u32(ring[1]) + u32(ring[2])
    out += u8(len(grant_overrides))
    for ref, gfn, w in grant_overrides:
        out += u8(ref) + u16(gfn) + u8(w)
    return out + ram.image() + ops


def vq_seeds():
    for mode, name in ((0, "gfn"), (1, "grant")):
        base = GRANT if mode else 0
        buf = base | 0x10000

        def b(off):
            return buf + off
        simple = [(0, [(b(0), 16, F_NEXT, 1), (b(0x200), 512, F_NEXT | F_WRITE, 2),
                       (b(0x400), 1, F_WRITE, 0)])]
        # pop, pop, push, drain, notify dance
        ops = u8(0) + u8(0) + u8(1) + u32(513) + u8(7) + u8(3) + u8(5) + u8(4)
        save("virtqueue", f"{name}-chain", vq_seed(mode, 3, simple, ops))
        ind = [(0, [(base | 0x1000, 48, F_INDIRECT, 0)])]
        tables = [(0x1000, [(b(0), 16, F_NEXT, 1), (b(0x800), 4096, F_NEXT | F_WRITE, 2),
                            (b(0x2000), 1, F_WRITE, 0)])]
        save("virtqueue", f"{name}-indirect",
             vq_seed(mode | 4 | 2, 4, ind, u8(7) + u8(3) + u8(8) + u8(2) + u16(0) + u8(7),
                     indirect_tables=tables, used_event=1))
        save("virtqueue", f"{name}-cached",
             vq_seed(mode | 8, 3, simple, u8(7) + u8(6) + u8(7) + u8(5)))
    loop = [(0, [(0x10000, 16, F_NEXT, 1), (0x10010, 16, F_NEXT, 0)])]
    save("virtqueue", "gfn-loop", vq_seed(0, 3, loop, u8(0)))
    far = [(0, [(0x7fff0000, 16, 0, 0)])]
    save("virtqueue", "gfn-out-of-range", vq_seed(0, 3, far, u8(0)))
    # Buffer across the 2 MiB chunk boundary, second chunk with a hole.
    cross = [(0, [(0x1ff800, 0x1000, F_WRITE, 0)])]
    save("virtqueue", "gfn-chunk-cross", vq_seed(0x18, 3, cross, u8(7)))
    # A writable buffer in a read-only grant: must be refused, not mapped.
    ro = [(0, [(GRANT | 0x10000, 16, F_NEXT, 1), (GRANT | 0x11000, 512, F_WRITE, 0)])]
    save("virtqueue", "grant-readonly", vq_seed(1, 3, ro, u8(0) + u8(1) + u32(0),
                                                grant_overrides=[(17, 17, 0)]))
    nested = [(0, [(0x1000, 16, F_INDIRECT, 0)])]
    save("virtqueue", "gfn-nested-indirect",
         vq_seed(4, 3, nested, u8(0), indirect_tables=[(0x1000, [(0x1000, 16, F_INDIRECT, 0)])]))
    # Avail index far ahead of the queue size.
    save("virtqueue", "gfn-avail-jump",
         vq_seed(0, 3, simple_gfn(), u8(2) + u16(0x401) + u16(0x4000) + u8(0)))
    big = [(0, [(0x10000, 4096, F_WRITE, 0)])]
    save("virtqueue", "gfn-1024", vq_seed(2, 10, big, u8(7) + u8(3) + u8(5),
                                         ring=(0x1000, 0x100, 0x8000)))


def simple_gfn():
    return [(0, [(0x10000, 16, F_NEXT, 1), (0x10200, 512, F_WRITE, 0)])]


# ---- blk ----
T_IN, T_OUT, T_FLUSH, T_GET_ID, T_DISCARD, T_WZ, T_SECURE = range(7)
ALL_FEATURES = (1 << 64) - 1


def blk_header(dflags=0x0f, sectors=256, limits=0, dev=0x0c, features=ALL_FEATURES,
               serial=b"fuzz-serial-0001"):
    return (u8(dflags) + u16(sectors) + u8(limits) + u8(dev) + u64(features) +
            serial.ljust(20, b"\0")[:20])


def split(cuts):
    return u8(len(cuts)) + b"".join(u16(c) for c in cuts)


def blk_req(ti, sector=0, data=0, segs=None, cut=0, in_len=1, out_split=(),
            in_split=(), flags=2, q=0, raw_type=None):
    out = u8(0) + u8(q) + u8(ti)
    if raw_type is not None:
        out += u32(raw_type)
    out += u8(0) + u64(sector)
    if ti in (T_DISCARD, T_WZ):
        out += u8(len(segs)) + b"".join(struct.pack("<QII", *s) for s in segs)
    else:
        out += u16(data)
    out += u8(cut) + u16(in_len)
    out += split(out_split) + split(in_split) + u8(flags)
    return out


HARVEST = u8(5)


def blk_seeds():
    save("blk", "read-write",
         blk_header() + blk_req(T_OUT, 8, 1024) + blk_req(T_IN, 8, in_len=1025) +
         blk_req(T_FLUSH) + blk_req(T_GET_ID, in_len=21) + HARVEST)
    save("blk", "split-headers",
         blk_header() + blk_req(T_OUT, 2, 512, out_split=(3, 5, 100)) +
         blk_req(T_IN, 2, in_len=513, out_split=(7,), in_split=(100, 300, 112)) + HARVEST)
    save("blk", "short-header",
         blk_header() + blk_req(T_IN, cut=0x80 | 9, in_len=513) +
         blk_req(T_OUT, cut=0x80, in_len=1) + HARVEST)
    save("blk", "discard-wz",
         blk_header(limits=0x88) +
         blk_req(T_DISCARD, segs=[(0, 8, 0), (16, 4, 0), (250, 6, 0)]) +
         blk_req(T_WZ, segs=[(0, 8, 1), (255, 2, 0)]) +
         blk_req(T_WZ, segs=[(0, 8, 2)]) + blk_req(T_DISCARD, segs=[]) + HARVEST)
    save("blk", "indirect-grant",
         blk_header(dev=0x4c) + blk_req(T_OUT, 0, 2048, out_split=(16,), flags=3) +
         blk_req(T_IN, 0, in_len=2049, in_split=(2048,), flags=3) + HARVEST)
    deferred = u8(4) + u8(1)
    save("blk", "deferred-reset",
         blk_header(dev=0x8d) + deferred + blk_req(T_IN, 0, in_len=4097) +
         blk_req(T_OUT, 0, 4096, q=1) + blk_req(T_IN, 4, in_len=513) +
         u8(3) + u8(1) + u8(1) + u8(0) + u8(7) + u64(ALL_FEATURES) + u8(3) +
         u8(3) + u8(5) + u8(0) + u8(1) + HARVEST)
    # Reset with requests in flight, wait for Status 0, then finish them.
    save("blk", "reset-wait",
         blk_header(dev=0x0d) + deferred + blk_req(T_IN, 0, in_len=4097) +
         blk_req(T_IN, 8, in_len=513, q=1) + blk_req(T_OUT, 16, 512) +
         u8(10) + u8(1) + u8(3) + u8(9) + u8(0) + u8(0) +
         u8(7) + u64(ALL_FEATURES) + u8(3) + blk_req(T_IN, 0, in_len=513) + HARVEST)
    save("blk", "failures",
         blk_header(dflags=0x01) + u8(4) + u8(6) + blk_req(T_OUT, 0, 512) +
         u8(4) + u8(4) + blk_req(T_IN, 0, in_len=513) +
         blk_req(T_FLUSH) + blk_req(0xff, raw_type=99) + HARVEST)
    save("blk", "bad-chains",
         blk_header() + blk_req(T_IN, 0, in_len=513, in_split=(10,), flags=6) +
         blk_req(T_IN, 300, in_len=513) + blk_req(T_OUT, 0, 100) + HARVEST)
    save("blk", "registers",
         blk_header(dev=0x0d) + u8(6) + u16(0x100) + u8(0x83) + u64(0) +
         u8(6) + u16(0x30) + u8(2) + u64(1) + u8(6) + u16(0x44) + u8(2) + u64(1) +
         u8(6) + u16(0x70) + u8(2) + u64(0) + u8(9) + HARVEST)


# ---- transport ----

def raw(op, size, off, value=0):
    return u8(0) + u8(op) + u8(size) + u16(off) + u64(value)


def tr_req(*a, **k):
    return u8(3) + blk_req(*a, **k)[1:]


def transport_seeds():
    setup = u8(2) + u64(ALL_FEATURES) + u8(3)
    for cfg, name in ((0, "gfn"), (1, "grant"), (5, "grant-cached")):
        save("transport", f"{name}-io",
             u8(cfg) + u8(0x0d) + setup + tr_req(T_OUT, 8, 1024) +
             tr_req(T_IN, 8, in_len=1025) + tr_req(T_FLUSH) + u8(1) + u8(4))
    save("transport", "raw-registers",
         u8(0) + u8(0x0c) + raw(1, 4, 0x000) + raw(1, 4, 0x008) + raw(1, 4, 0x010) +
         raw(2, 4, 0x014, 1) + raw(1, 4, 0x010) + raw(1, 8, 0x100) + raw(1, 2, 0x103) +
         raw(3, 4, 0x070) + raw(1, 4, 0x060) + raw(2, 4, 0x064, 3) + raw(1, 4, 0x1000) +
         raw(2, 4, 0x070, 0) + u8(1))
    save("transport", "ring-overflow",
         u8(0) + u8(0x0c) + raw(1, 4, 0x000) + u8(5) + u8(0) + u32(300) + u8(1) +
         raw(1, 4, 0x000) + u8(1))
    save("transport", "many-requests",
         u8(0) + u8(0x0c) + b"".join(raw(1, 4, 0x70) for _ in range(300)) + u8(1) +
         u8(5) + u8(1) + u32(5) + raw(1, 4, 0) + u8(1))
    save("transport", "bad-magic", u8(2) + u8(0))


# ---- sparse images ----

def sparse_header(vsize, cbits, map_offset, data_offset, entries=None, incompat=0):
    cs = 1 << cbits
    if entries is None:
        entries = (vsize + cs - 1) // cs
    h = bytearray(128)
    h[0:8] = b"VPXSPARS"
    struct.pack_into("<IIQIIQQQI", h, 8, 1, 128, vsize, cbits, incompat, map_offset,
                     entries, data_offset, 0)
    return bytes(h)  # checksum left to the harness


def sparse_image(vsize, entries_at, clusters, cbits=12, map_offset=128, data_offset=4096,
                 tail=b"", **kw):
    """entries_at: {vc: entry}; clusters: {file offset: byte}."""
    f = bytearray(sparse_header(vsize, cbits, map_offset, data_offset, **kw))
    end = max([data_offset] + [o + (1 << cbits) for o in clusters])
    f.extend(b"\0" * (end - len(f)))
    for vc, e in entries_at.items():
        struct.pack_into("<Q", f, map_offset + 8 * vc, e)
    for off, b in clusters.items():
        f[off:off + 16] = bytes([b]) * 16
    return bytes(f) + tail


def sparse_seeds():
    images = {
        "clean": (0, 0, sparse_image(65536, {0: 4096, 3: 8192}, {4096: 1, 8192: 2})),
        "leaked": (2, 0, sparse_image(65536, {1: 4096}, {4096: 1, 8192: 2, 16384: 3})),
        "hole-tail": (2, 3, sparse_image(65536, {1: 8192}, {8192: 9})),
        "double-ref": (2, 0, sparse_image(65536, {0: 4096, 1: 4096}, {4096: 1})),
        "bad-entries": (0, 0, sparse_image(65536, {0: 4097, 1: 0x0100000000001000,
                                                   2: 4096 * 40, 3: 0}, {4096: 5})),
        "bad-geometry": (0, 0, sparse_image(65536, {}, {}, entries=7)),
        "incompat": (0, 0, sparse_image(65536, {}, {}, incompat=1)),
        "keep-crc": (1, 0, sparse_image(65536, {0: 4096}, {4096: 1})),
        "odd-size": (2, 0, sparse_image(5 * 4096 + 512, {5: 4096}, {4096: 7, 8192: 8})),
        "big-clusters": (0, 1, sparse_image(1 << 22, {0: 1 << 21}, {},
                                            cbits=21, map_offset=4096,
                                            data_offset=1 << 21)[:8192]),
    }
    for name, (flags, hole, img) in images.items():
        save("sparse", name, u8(flags) + u16(hole) + img)
    # vproxy-img: flags bits 1-3 pick the command (0 info, 1 map, 2 check,
    # 3 check --repair, 4 convert -O sparse, 5 and back to raw, 6-7 to raw).
    for name, (flags, hole, img) in images.items():
        cmds = {"clean": range(8), "leaked": (1, 3, 5)}.get(name, (2,))
        for cmd in cmds:
            save("img", f"{name}-{cmd}", u8((flags & 1) | cmd << 1) + u16(hole) + img)
    raw = bytes(range(256)) * 8 + b"\0" * 4096 + b"tail"
    for cmd in (0, 4, 5, 6):
        save("img", f"raw-disk-{cmd}", u8(cmd << 1) + u16(0) + raw)
    save("img", "raw-disk-big-cluster", u8(5 << 1 | 0x30) + u16(2) + raw)
    # An empty 32 TiB image (2 MiB clusters, its 128 MiB map all hole):
    # convert used to visit every cluster of the virtual size (hours).
    huge = sparse_header(32 << 40, 21, 4096, (128 << 20) + (2 << 20))
    for cmd in (1, 4, 6):
        save("img", f"huge-empty-{cmd}", u8(cmd << 1) + u16(((128 + 2) << 20) // 4096) + huge)


# ---- xsbus ----

def xs_connect(dev, how=0):
    return u8(6) + u8(dev) + u8(how)


def xs_state(dev, st):
    return u8(3) + u8(dev) + u8(st)


def xs_regs(dev, msgs, port=1):
    out = u8(7) + u8(dev) + u8(len(msgs))
    for op, off, val in msgs:
        out += u8(op) + u16(off) + u32(val)
    return out + u8(port - 1)


def xs_write(dev, key, value):
    return u8(2) + u8(dev) + u8(key) + u8(value)


def xsbus_seeds():
    init = [(2, 0x000, 0), (2, 0x070, 0), (2, 0x070, 3), (1, 0x010, 0), (2, 0x070, 0xb)]
    save("xsbus", "lifecycle",
         u8(0x0f) + xs_connect(0) + xs_regs(0, init) + xs_state(0, 5) + xs_state(0, 6) +
         xs_state(0, 1) + xs_connect(0, 1) + xs_regs(0, init, port=2) + u8(1) + u8(0))
    save("xsbus", "garbage-values",
         u8(0x01) + xs_write(0, 1, 8) + xs_write(0, 2, 13) + xs_write(0, 3, 19) +
         xs_write(0, 4, 9) + xs_state(0, 3) + xs_write(0, 1, 10) + xs_write(0, 0, 19) +
         xs_write(0, 0, 0x80 + 3) + b"abc" + xs_state(0, 1) + xs_state(0, 3))
    save("xsbus", "node-removal",
         u8(0x03) + xs_connect(0) + xs_connect(2, 3) + u8(4) + u8(0) + u8(5) + u8(2) +
         u8(4) + u8(0x80 | 2 << 2 | 1) + xs_state(1, 3))
    save("xsbus", "shutdown-connected",
         u8(0x1f) + xs_connect(0) + xs_connect(1, 5) + xs_state(1, 5) + xs_write(0, 0, 19) +
         u8(9))
    save("xsbus", "late-introduction",
         u8(0) + u8(0) + u8(1) + u8(0) + u8(2) + xs_connect(2, 2) + xs_connect(3) +
         u8(0) + u8(2) + u8(1) + u8(1) + u8(1) + u8(0))


# ---- config ----

CONFIGS = {
    "bad-numbers.ini": b'[device x]\nguest = 1\nid = 0x10\nplugin = mem\nqueues = 17\nqueue-size = 3\nsize = 99999999999999999999T\n',
    "bom-indent.ini": b'\xef\xbb\xbf[vproxyd]\n  hypervisor = sim ; comment\n[device y]\nguest = a.b-c_d\nplugin = mem\n  size = 1M\n    continued\nserial = 012345678901234567890\n',
    "duplicate-id.ini": b'[device a]\nguest = 5\nplugin = mem\nsize = 1G\n[device b]\nguest = 5\nplugin = mem\nsize = 1G\n',
    "from-file.ini": b'\x00[vproxyd]\nhypervisor = sim\n',
    "full.ini": b'; every key once\n[vproxyd]\nhypervisor = xen\nrun-dir = /run/vp\nplugin-dir = /usr/lib/vp\nlog-level = debug\nbackend-domid = 0\npoll-us = 50\n\n[device a]\nguest = web1\nid = 3\nplugin = mem\nsize = 64M\nblock-size = 4096\nread-only = yes\nqueues = 4\nqueue-size = 1024\nserial = ABCDEFGHIJ0123456789\n\n[device b]\nguest = 7\nid = 0\nplugin = raw\nfile = /tmp/x.img\n',
    "nul-byte.ini": b'\x00[device n]\nguest = 3\nplugin = mem\x00size = 1M\n',
    "poll-us-range.ini": b'[vproxyd]\npoll-us = 1000001\n',
    "sections.ini": b'[vproxyd]\nlog-level = info\n[vproxyd]\n[device]\n[device  z ]\nkey\n=value\n[unterminated\n',
}


def config_seeds():
    # An input starting with a NUL byte is read from a file (fuzz_config.c).
    for name, text in CONFIGS.items():
        save("config", name, text)


if __name__ == "__main__":
    config_seeds()
    xsbus_seeds()
    sparse_seeds()
    vq_seeds()
    blk_seeds()
    transport_seeds()
