# Manual check (not run by pytest or CI, which have no Ruby resque-web): renders resque-web's
# Schedule tab (Resque::Server + resque-scheduler 5.0's server extension) through Rack from the
# keys a Python scheduler wrote, and presses "Queue now". Needs Debian's ruby-redis
# ruby-redis-namespace ruby-mono-logger ruby-rufus-scheduler ruby-fugit ruby-sinatra, and the
# lib/ folders of resque v3.0.0 and resque-scheduler v5.0.0 on RUBYLIB:
#
#   TZ=Etc/UTC resque-py --redis redis://127.0.0.1:6379/5 scheduler --schedule SCHEDULE.yml   # a few seconds
#   RUBYLIB=... REDIS_URL=redis://127.0.0.1:6379/5 SCHEDULE_FILE=SCHEDULE.yml ruby tests/manual/resque_web_schedule.rb
#
# Prints each row (Name, Description, Interval, Class, Queue, Arguments, Last Enqueued; rows
# resque-web highlights as skipped in RAILS_ENV are marked) and the status of "Queue now" for each
# schedule. fixtures/ruby-interop/scheduler_capture.sh runs it and records the output.
require 'multi_json'; MultiJson.use :json_gem
require 'resque'; require 'resque-scheduler'; require 'resque/server'; require 'resque/scheduler/server'
require 'yaml'; require 'rack/mock'
Resque.redis = ENV.fetch('REDIS_URL')
Resque.schedule = YAML.load_file(ENV.fetch('SCHEDULE_FILE')) # the Rails app's initializer
app = Rack::MockRequest.new(Resque::Server.new)
res = app.get('/schedule')
puts "GET /schedule -> #{res.status}"
res.body.scan(%r{<tr style="([^"]*)">(.*?)</tr>}m).each do |style, row|
  # a styled (highlighted) row is one resque-web says is skipped in this RAILS_ENV
  puts "#{style.empty? ? '' : '[skipped in this env] '}#{row.gsub(/<[^>]+>/, ' ').split.join(' ')}"
end
puts res.body[/Current master: [^<]*/]
Resque.schedule.keys.sort.each do |name|
  res = app.post('/schedule/requeue', params: { 'job_name' => name })
  puts "Queue now #{name} -> #{res.status} #{res['Location']}"
end
