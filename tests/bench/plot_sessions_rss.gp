# Sessions vs watcher RSS as one watcher fills up in ten steps
# (bench_watcher's watcher_rss_plain.dat and watcher_rss_tls.dat: "sessions
# rss_kib", the first row with no users), with
# docs/architecture.md section 7's budget (4 KiB plain, 24 KiB TLS per session) drawn
# from each run's first reading. Called by tests/bench/run.sh as
#   gnuplot -e "plain='<file or empty>'; tls='<file or empty>'; out='<svg>'" plot_sessions_rss.gp
# SPDX-License-Identifier: MIT
set terminal svg size 800,480 dynamic enhanced font 'Helvetica,12' background rgb 'white'
set output out
set title 'superimap-watcher: idle IMAP sessions vs resident memory'
set xlabel 'sessions watching (IDLE)'
set ylabel 'watcher RSS (MiB)'
set key top left
set grid
cmd = ''
if (plain ne '') {
    stats plain using 2 every ::0::0 nooutput
    base_plain = STATS_min
    cmd = cmd . sprintf("'%s' using 1:($2/1024) with linespoints pt 7 ps 0.4 lc rgb '#1f77b4' title 'plain', ", plain) \
        . sprintf("(base_plain + 4 * x) / 1024 with lines dt 2 lc rgb '#1f77b4' title 'budget, plain (4 KiB/session)', ")
}
if (tls ne '') {
    stats tls using 2 every ::0::0 nooutput
    base_tls = STATS_min
    cmd = cmd . sprintf("'%s' using 1:($2/1024) with linespoints pt 7 ps 0.4 lc rgb '#d62728' title 'TLS', ", tls) \
        . sprintf("(base_tls + 24 * x) / 1024 with lines dt 2 lc rgb '#d62728' title 'budget, TLS (24 KiB/session)', ")
}
stats (plain ne '' ? plain : tls) using 1 nooutput
xmax = STATS_max
if (tls ne '') {
    stats tls using 1 nooutput
    xmax = STATS_max > xmax ? STATS_max : xmax
}
set xrange [0:xmax * 1.05]
set yrange [0:*]
eval('plot ' . cmd[1:strlen(cmd) - 2])
