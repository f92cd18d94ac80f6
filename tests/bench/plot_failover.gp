# Failover timeline around a kill -9 or a SIGSTOP of watcher 1
# (bench_failover's failover.dat and failover_sigstop.dat: "t_s watcher1
# watcher2 watcher3 imap_sessions sent_per_s webhooks_per_s", t_s relative
# to the event; the first row's rates are NaN), two panels: sessions in
# IDLE per watcher with the sessions logged in at fake-imapd, then mail
# appended and announced (webhooks received) per second. Marks the event,
# the target (issue #20: users back in IDLE by then) and, after a SIGSTOP,
# the SIGCONT (cont < 0: none). Called by tests/bench/run.sh as
#   gnuplot -e "in='<dat>'; out='<svg>'; event='kill -9'; target=3.2; cont=-1" plot_failover.gp
# SPDX-License-Identifier: MIT
set terminal svg size 800,640 dynamic enhanced font 'Helvetica,12' background rgb 'white'
set output out
stats in using 1 nooutput
xmin = STATS_min
xmax = STATS_max > target + 1 ? STATS_max : target + 1
set xrange [xmin:xmax]
set grid
set key outside right
set offsets 0, 0, graph 0.1, 0
set multiplot layout 2,1 title sprintf('Failover: %s of watcher 1 at t = 0', event)
set lmargin 10
set rmargin 28
set arrow 1 from 0, graph 0 to 0, graph 1 nohead lc rgb '#d62728'
set label 1 event at 0, graph 0.95 offset 0.5, 0 font ',10'
set arrow 2 from target, graph 0 to target, graph 1 nohead dt 2 lc rgb '#555555'
set label 2 sprintf('target %.1f s', target) at target, graph 0.85 offset 0.5, 0 font ',10'
if (cont >= 0) {
    set arrow 3 from cont, graph 0 to cont, graph 1 nohead lc rgb '#2ca02c'
    set label 3 'SIGCONT' at cont, graph 0.75 offset 0.5, 0 font ',10'
}
set ylabel 'sessions in IDLE'
set yrange [0:*]
set format x ''
plot for [i=2:4] in using 1:i with steps lw 2 title sprintf('watcher %d', i - 1), \
     in using 1:5 with steps lw 1 dt 2 lc rgb '#555555' title 'logged in at fake-imapd'
set format x '%g'
set xlabel sprintf('seconds from the %s', event)
set ylabel 'mails/s'
# A rate covers the span since the row before: fsteps draws it there.
plot in using 1:6 with fsteps lw 2 lc rgb '#1f77b4' title 'appended', \
     in using 1:7 with fsteps lw 2 lc rgb '#ff7f0e' title 'webhooks received'
unset multiplot
