# Histogram of new mail -> event recorded and -> webhook received at 1,000
# mails/s (bench_watcher's latency.dat: "ms_low ms_high recorded webhook",
# 10 bins per decade), logarithmic time axis, with docs/architecture.md section 7's
# p50 and p99 targets. Called by tests/bench/run.sh as
#   gnuplot -e "in='<latency.dat>'; out='<svg>'" plot_latency.gp
# SPDX-License-Identifier: MIT
set terminal svg size 800,480 dynamic enhanced font 'Helvetica,12' background rgb 'white'
set output out
set title 'New mail to webhook at 1,000 mails/s: latency histogram'
set xlabel 'milliseconds from the message appended on the IMAP server (log scale)'
set ylabel 'messages per bin (10 bins per decade)'
set logscale x
set grid
set key outside bottom center horizontal
set style fill transparent solid 0.45 noborder
set arrow from 5, graph 0 to 5, graph 1 nohead dt 2 lc rgb '#555555'
set label 'p50 target 5 ms' at 5, graph 0.9 right offset -0.5, 0 font ',10'
set arrow from 50, graph 0 to 50, graph 1 nohead dt 2 lc rgb '#555555'
set label 'p99 target 50 ms' at 50, graph 0.9 right offset -0.5, 0 font ',10'
set xrange [*<0.1:100<*]
set yrange [0:*]
plot in using (sqrt($1 * $2)):($3 / 2):1:2:(0):3 with boxxyerror lc rgb '#2ca02c' title 'event recorded in Redis', \
     in using (sqrt($1 * $2)):($4 / 2):1:2:(0):4 with boxxyerror lc rgb '#1f77b4' title 'webhook received'
