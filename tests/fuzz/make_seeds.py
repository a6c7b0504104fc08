#!/usr/bin/env python3
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


if __name__ == "__main__":
    vq_seeds()
    blk_seeds()
