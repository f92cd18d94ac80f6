# New mail to webhook received (and to event recorded) by mail rate
# (bench_watcher's latency_rates.dat: "rate p50 p90 p99 p999 max delivered
# sent rec_p50 rec_p90 rec_p99 rec_p999 rec_max recorded achieved", ms),
# logarithmic time axis, with issue #20's p99 target of 20 ms at 5,000
# mails/s. Called by tests/bench/run.sh as
#   gnuplot -e "in='<latency_rates.dat>'; out='<svg>'" plot_latency_rates.gp
# SPDX-License-Identifier: MIT
set terminal svg size 800,480 dynamic enhanced font 'Helvetica,12' background rgb 'white'
set output out
set title 'New mail to webhook: latency percentiles against mail rate (one watcher, one dispatcher)'
set xlabel 'mails/s appended'
set ylabel 'ms from the append (log scale)'
set logscale y
set grid
set key outside right
set xrange [0:*]
set offsets 0, graph 0.05, 0, 0
set arrow from graph 0, first 20 to graph 1, first 20 nohead dt 2 lc rgb '#555555'
set label 'p99 target 20 ms at 5,000/s' at 5000, 20 right offset -1, 0.8 font ',10'
plot in using 1:2 with linespoints pt 7 lw 2 lc rgb '#2ca02c' title 'webhook p50', \
     in using 1:3 with linespoints pt 7 lw 2 lc rgb '#1f77b4' title 'webhook p90', \
     in using 1:4 with linespoints pt 7 lw 2 lc rgb '#d62728' title 'webhook p99', \
     in using 1:6 with linespoints pt 7 lw 1 lc rgb '#555555' title 'webhook max', \
     in using 1:11 with linespoints pt 6 lw 1 dt 2 lc rgb '#d62728' title 'event recorded p99', \
     '+' using (5000):(20) every ::0::0 with points pt 9 ps 1.5 lc rgb '#d62728' title 'target'
