# The live heap at the end of a heaptrack record, by allocation site
# (tests/bench/heap_profile.sh runs it; docs/performance.md):
#
#   awk [-v depth=N] -f heap_pages.awk <heaptrack_interpret output> <raw record>
#
# A site is the first depth (2) frames outside the allocator wrappers (x*,
# CRYPTO_*, malloc). For each: page bytes (the 4 KiB pages its blocks keep
# resident, each page's 4,096 bytes shared among the chunks in it by their
# size, so the slack of partly used pages is charged to what keeps them),
# chunk bytes (glibc's chunk of n bytes asked: max(32, (n + 8 + 15) & ~15)),
# blocks, bytes asked. The interpreted file gives each allocation's site and
# size; the raw record, in the same order, its address. mawk-compatible (no
# strtonum): hex by hand, addresses kept as strings until the end.
function hex(s,   v, k) {
    v = 0
    for (k = 1; k <= length(s); k++)
        v = v * 16 + index("0123456789abcdef", substr(s, k, 1)) - 1
    return v
}
BEGIN {
    split("xmalloc xcalloc xrealloc xstrdup xstrndup CRYPTO_malloc CRYPTO_zalloc " \
          "CRYPTO_realloc CRYPTO_clear_realloc CRYPTO_strdup CRYPTO_strndup CRYPTO_memdup " \
          "malloc calloc realloc", w, " ")
    for (i in w)
        wrap[w[i]] = 1
    if (depth == 0)
        depth = 2
}
FNR == NR {
    if ($1 == "s") {
        nstr++
        str[nstr] = substr($0, 3 + length($2) + 1)
    } else if ($1 == "i") {
        nip++
        mod[nip] = hex($3)
        fr = ""
        for (j = 4; j + 2 <= NF; j += 3)
            fr = fr (fr == "" ? "" : "|") hex($j)
        ipfr[nip] = fr
    } else if ($1 == "t") {
        ntr++
        tip[ntr] = hex($2)
        tpar[ntr] = hex($3)
    } else if ($1 == "a") {
        asz[nai] = hex($2)
        atr[nai] = hex($3)
        nai++
    } else if ($1 == "+") {
        nplus++
        seq[nplus] = hex($2)
    }
    next
}
$1 == "+" { k++; live[$4] = k; next }
$1 == "-" { delete live[$2]; next }
function site(t,   got, s, m, parts, q, nm) {
    got = 0
    s = ""
    while (t > 0 && got < depth) {
        m = split(ipfr[tip[t]], parts, "|")
        if (m == 0) {
            s = s (s == "" ? "" : " < ") "[" str[mod[tip[t]]] "]"
            got++
        }
        for (q = 1; q <= m && got < depth; q++) {
            nm = parts[q] + 0 ? str[parts[q] + 0] : "?"
            if (nm in wrap)
                continue
            if (nm == "?")
                nm = "[" str[mod[tip[t]]] "]"
            s = s (s == "" ? "" : " < ") nm
            got++
        }
        t = tpar[t]
    }
    return s
}
END {
    n = 0
    for (ps in live) {
        ai = seq[live[ps]]
        sz = asz[ai]
        p = hex(ps)
        ch = int((sz + 8 + 15) / 16) * 16
        if (ch < 32)
            ch = 32
        if (!(ai in sitecache))
            sitecache[ai] = site(atr[ai])
        st = sitecache[ai]
        n++
        cnt[st]++
        req[st] += sz
        chk[st] += ch
        lo = p - 16
        hi = lo + ch
        for (pn = int(lo / 4096); pn * 4096 < hi; pn++) {
            pg = sprintf("%.0f", pn)
            a = lo > pn * 4096 ? lo : pn * 4096
            b = hi < (pn + 1) * 4096 ? hi : (pn + 1) * 4096
            used[pg] += b - a
            own[pg, st] += b - a
            pages[pg] = 1
        }
    }
    for (key in own) {
        split(key, kk, SUBSEP)
        pgb[kk[2]] += own[key] / used[kk[1]] * 4096
    }
    np = 0
    for (pg in pages)
        np++
    tot = 0
    for (st in chk)
        tot += chk[st]
    printf "# live blocks %d, chunk bytes %.0f, pages %d (%.0f bytes)\n", n, tot, np, np * 4096
    for (st in cnt)
        printf "%.0f\t%.0f\t%d\t%.0f\t%s\n", pgb[st], chk[st], cnt[st], req[st], st
}
