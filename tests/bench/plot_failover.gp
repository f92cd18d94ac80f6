# Failover timeline: sessions watching per watcher around a kill -9
# (bench_failover's failover.dat: "t_s watcher1 watcher2 ...", t_s relative
# to the kill), with docs/architecture.md section 7's 45 s deadline. Called by
# tests/bench/run.sh as
#   gnuplot -e "in='<failover.dat>'; out='<svg>'" plot_failover.gp
# SPDX-License-Identifier: MIT
set terminal svg size 800,480 dynamic enhanced font 'Helvetica,12' background rgb 'white'
set output out
set title 'Failover: sessions per watcher around a kill -9'
set xlabel 'seconds from the kill'
set ylabel 'sessions watching'
set grid
set key outside right
set yrange [0:*]
stats in nooutput
ncols = STATS_columns
set arrow from 0, graph 0 to 0, graph 1 nohead lc rgb '#d62728'
set label 'kill -9' at 0, graph 0.97 offset 0.5, 0 font ',10'
set arrow from 45, graph 0 to 45, graph 1 nohead dt 2 lc rgb '#555555'
set label 'target 45 s' at 45, graph 0.97 offset 0.5, 0 font ',10'
plot for [i=2:ncols] in using 1:i with steps lw 2 title sprintf('watcher %d', i - 1)
