# The real thing that tests/faults/ruby_peer.py emulates: a Resque 3.0.0 worker's startup
# (heartbeat thread, prune_dead_workers, register_worker) and then prune_dead_workers every
# EVERY seconds, without working jobs. Used by tests/faults/test_restart_storm.py when
# RESQUE_RUBY_LIB names resque v3.0.0's lib/ (redis 4.8, redis-namespace and multi_json from
# Debian's ruby-* packages); usage: ruby ruby_peer.rb URL QUEUES HEARTBEAT PRUNE_INTERVAL EVERY
require "resque"

url, queues, heartbeat, prune_interval, every = ARGV
Resque.redis = url
Resque.heartbeat_interval = heartbeat.to_i
Resque.prune_interval = prune_interval.to_i
Resque.logger = Logger.new($stdout)
Resque.logger.level = Logger::DEBUG  # the ps path logs its prunes at debug
$stdout.sync = true
worker = Resque::Worker.new(*queues.split(","))
worker.startup
puts "registered #{worker}"
$0 = "resque-#{Resque::VERSION}: Waiting for #{queues}"
loop do
  sleep every.to_f
  worker.prune_dead_workers
end
