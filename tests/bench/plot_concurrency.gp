# superimap-dispatcher throughput by concurrency (bench_dispatcher's
# dispatcher_concurrency.dat: "concurrency webhooks_per_s"), with docs/architecture.md
# section 7's 10,000 webhooks/s target. Called by tests/bench/run.sh as
#   gnuplot -e "in='<dispatcher_concurrency.dat>'; out='<svg>'" plot_concurrency.gp
# SPDX-License-Identifier: MIT
set terminal svg size 800,480 dynamic enhanced font 'Helvetica,12' background rgb 'white'
set output out
set title 'superimap-dispatcher: signed webhooks/s (1 KiB bodies) to a keep-alive receiver'
set xlabel 'requests in flight at once (log scale)'
set ylabel 'webhooks/s'
set logscale x 2
set grid
set key bottom right
set yrange [0:*]
plot in using 1:2 with linespoints pt 7 lw 2 lc rgb '#1f77b4' title 'one dispatcher', \
     10000 with lines dt 2 lc rgb '#d62728' title 'target 10,000/s'
