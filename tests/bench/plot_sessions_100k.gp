# Six watchers from a cold start to 100,000 idle sessions (bench_watcher's
# sessions_100k.dat: "t_s sessions rss_kib rss_w1 ... rss_w6", t_s from
# the first user written, sessions in IDLE and VmRSS of the watchers in
# all; the last row once settled and idle), two panels on one time axis:
# sessions in IDLE, and the watchers' RSS beside what issue #20's 1 KiB per
# plain session allows for the sessions in IDLE at that moment (from the
# first reading, with no users). Called by tests/bench/run.sh as
#   gnuplot -e "in='<sessions_100k.dat>'; out='<svg>'" plot_sessions_100k.gp
# SPDX-License-Identifier: MIT
set terminal svg size 800,640 dynamic enhanced font 'Helvetica,12' background rgb 'white'
set output out
stats in using 3 every ::0::0 nooutput
base = STATS_min
stats in using 2 nooutput
smax = STATS_max
set grid
set key bottom right
set multiplot layout 2,1 title 'Six superimap-watchers from a cold start to 100,000 idle sessions'
set lmargin 12
set ylabel 'sessions in IDLE'
set yrange [0:(smax > 100000 ? smax : 100000) * 1.1]
set format x ''
plot in using 1:2 with lines lw 2 lc rgb '#1f77b4' title 'sessions in IDLE, all watchers', \
     100000 with lines dt 2 lc rgb '#d62728' title 'target 100,000'
set format x '%g'
set xlabel 'seconds from the first user written'
set ylabel 'RSS of the 6 watchers (MiB)'
set yrange [0:*]
plot in using 1:($3 / 1024) with linespoints pt 7 ps 0.4 lc rgb '#1f77b4' title 'RSS, all watchers', \
     in using 1:((base + $2) / 1024) with lines dt 2 lc rgb '#d62728' title 'target: 1 KiB per session in IDLE'
unset multiplot
