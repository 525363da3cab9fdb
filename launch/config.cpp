// The key table of TrainConfig: each key has a getter (its value as text) and a setter (parses
// text, throws naming the key). Boost.Program_options reads the INI file and the command line as
// strings, rejects unknown keys, and prints the help; the table converts and checks the values.
#include "launch/config.h"

#include <boost/program_options.hpp>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "comm/communicator.h"
#include "core/error.h"
#include "core/fs.h"
#include "launch/cli.h"

namespace po = boost::program_options;

namespace dtrain {
namespace {

struct Key {
  std::string name;  // "train.epochs"
  std::string help;
  std::function<std::string()> get;
  std::function<void(const std::string&)> set;
};

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream in(s);
  while (std::getline(in, item, sep)) out.push_back(trim(item));
  return out;
}

template <typename T>
T parse_number(const std::string& key, const std::string& text, const char* expected) {
  const std::string t = trim(text);
  T value{};
  const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), value);
  if (t.empty() || ec != std::errc() || end != t.data() + t.size())
    fail("config key ", key, ": '", text, "' is not ", expected);
  return value;
}

bool parse_bool(const std::string& key, const std::string& text) {
  std::string t = trim(text);
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (t == "true" || t == "1" || t == "yes" || t == "on") return true;
  if (t == "false" || t == "0" || t == "no" || t == "off") return false;
  fail("config key ", key, ": '", text, "' is not a boolean (true/false, yes/no, on/off, 1/0)");
}

std::string format_double(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

std::string join_ints(const std::vector<int64_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s.append(i ? "," : "").append(std::to_string(v[i]));
  return s;
}

std::vector<int64_t> parse_int_list(const std::string& key, const std::string& text) {
  std::vector<int64_t> out;
  if (trim(text).empty()) return out;
  for (const std::string& item : split(text, ','))
    out.push_back(parse_number<int64_t>(key, item, "a comma-separated list of integers"));
  return out;
}

// Typed key registration: the member is the single source of the default and the value.
class KeyTable {
 public:
  void add(const char* name, const std::string& help, std::string* v) {
    keys_.push_back({name, help, [v] { return *v; }, [v](const std::string& t) { *v = trim(t); }});
  }
  void add(const char* name, const std::string& help, bool* v) {
    keys_.push_back({name, help, [v] { return std::string(*v ? "true" : "false"); },
                     [v, name](const std::string& t) { *v = parse_bool(name, t); }});
  }
  void add(const char* name, const std::string& help, int* v) {
    keys_.push_back({name, help, [v] { return std::to_string(*v); },
                     [v, name](const std::string& t) { *v = parse_number<int>(name, t, "an integer"); }});
  }
  void add(const char* name, const std::string& help, int64_t* v) {
    keys_.push_back({name, help, [v] { return std::to_string(*v); },
                     [v, name](const std::string& t) { *v = parse_number<int64_t>(name, t, "an integer"); }});
  }
  void add(const char* name, const std::string& help, uint64_t* v) {
    keys_.push_back(
        {name, help, [v] { return std::to_string(*v); },
         [v, name](const std::string& t) { *v = parse_number<uint64_t>(name, t, "a non-negative integer"); }});
  }
  void add(const char* name, const std::string& help, double* v) {
    keys_.push_back({name, help, [v] { return format_double(*v); },
                     [v, name](const std::string& t) { *v = parse_number<double>(name, t, "a number"); }});
  }
  void add(const char* name, const std::string& help, float* v) {
    keys_.push_back({name, help, [v] { return format_double(*v); },
                     [v, name](const std::string& t) { *v = parse_number<float>(name, t, "a number"); }});
  }
  void add(Key key) { keys_.push_back(std::move(key)); }
  const std::vector<Key>& keys() const { return keys_; }

 private:
  std::vector<Key> keys_;
};

using Registry = std::vector<std::pair<std::string, std::string>>;  // name, summary

// "sgd | adam | adamw | rmsprop"
std::string names_of(const Registry& registry) {
  std::string list;
  for (const auto& [name, summary] : registry) list.append(list.empty() ? "" : " | ").append(name);
  return list;
}

void check_registered(const char* key, const std::string& value, const Registry& registry, const char* also = "") {
  for (const auto& [name, summary] : registry)
    if (value == name) return;
  fail("config key ", key, ": '", value, "' is not one of ", also, names_of(registry));
}

// The key table: one line per key, read top to bottom like the INI file it describes.
KeyTable key_table(TrainConfig& c) {  // NOLINT(readability-function-size): a declarative table
  KeyTable t;
  ModelConfig& m = c.model;
  std::string models;
  for (const std::string& name : registered_models()) models.append(models.empty() ? "" : " | ").append(name);
  t.add("model.type", "a registered model: " + models, &m.type);
  t.add({"model.hidden", "mlp: hidden layer sizes, comma-separated", [&m] { return join_ints(m.hidden); },
         [&m](const std::string& s) { m.hidden = parse_int_list("model.hidden", s); }});
  t.add("model.dropout", "dropout probability after each hidden activation", &m.dropout);
  t.add("model.activation", "relu | gelu", &m.activation);
  t.add({"model.input_shape", "per-sample input shape C,H,W or features (auto: from the training data)",
         [&m] {
           return m.input_shape.empty() ? std::string("auto")
                                        : join_ints(std::vector<int64_t>(m.input_shape.begin(), m.input_shape.end()));
         },
         [&m](const std::string& s) {
           if (trim(s) == "auto") {
             m.input_shape = Shape{};
             return;
           }
           const auto dims = parse_int_list("model.input_shape", s);
           m.input_shape = Shape(dims.begin(), dims.end());
         }});
  t.add("model.num_classes", "classes (0: from the training data's num_classes)", &m.num_classes);
  t.add("model.n_layer", "gpt: transformer blocks", &m.n_layer);
  t.add("model.n_head", "gpt: attention heads per block", &m.n_head);
  t.add("model.n_embd", "gpt: width (a multiple of n_head)", &m.n_embd);
  t.add("model.ctx", "gpt: context length in tokens (the training windows' length)", &m.ctx);
  t.add("model.vocab", "gpt: vocabulary size (0: the training data's vocab_size; 256 for bytes)", &m.vocab);
  t.add({"model.options", "extra key=value pairs for user-registered models, comma-separated",
         [&m] {
           std::string s;
           for (const auto& [k, v] : m.extra) s.append(s.empty() ? "" : ",").append(k).append("=").append(v);
           return s;
         },
         [&m](const std::string& s) {
           m.extra.clear();
           if (trim(s).empty()) return;
           for (const std::string& kv : split(s, ',')) {
             const auto eq = kv.find('=');
             if (eq == std::string::npos || eq == 0) fail("config key model.options: '", kv, "' is not key=value");
             m.extra[trim(kv.substr(0, eq))] = trim(kv.substr(eq + 1));
           }
         }});

  DataConfig& d = c.data;
  t.add("data.train", "training dataset file (dtrain data convert)", &d.train);
  t.add("data.test", "test dataset file for evaluation (empty: none)", &d.test);
  t.add("data.max_memory_mb", "largest block of a rank's shard held in memory (MiB)", &d.max_memory_mb);
  t.add("data.prefetch", "batches prepared ahead on a background thread (0: synchronous)", &d.prefetch);
  t.add("data.shuffle", "shuffle every epoch", &d.shuffle);
  t.add("data.augment_crop_padding", "random crop after zero padding by this many pixels (0: off)",
        &d.augment_crop_padding);
  t.add("data.augment_flip", "random horizontal flips", &d.augment_flip);
  t.add("data.eval_windows", "token data: validation windows evaluated (0: every non-overlapping one)",
        &d.eval_windows);

  OptimizerConfig& o = c.optim;
  ScheduleConfig& s = c.schedule;
  t.add("optim.type", names_of(registered_optimizers()), &o.type);
  t.add("optim.lr", "base learning rate", &o.lr);
  t.add("optim.momentum", "sgd, rmsprop: momentum", &o.momentum);
  t.add("optim.nesterov", "sgd: Nesterov momentum", &o.nesterov);
  t.add("optim.weight_decay", "L2 penalty (adamw: decoupled decay)", &o.weight_decay);
  t.add("optim.beta1", "adam, adamw", &o.beta1);
  t.add("optim.beta2", "adam, adamw", &o.beta2);
  t.add("optim.eps", "adam, adamw, rmsprop", &o.eps);
  t.add("optim.alpha", "rmsprop: smoothing constant", &o.alpha);
  t.add("optim.clip_norm", "global-norm gradient clipping after the all-reduce (0: off)", &c.clip_norm);
  t.add("optim.schedule", "constant | step | cosine (all with linear warmup)", &s.type);
  t.add("optim.warmup_steps", "linear warmup steps from 0", &s.warmup_steps);
  t.add("optim.step_size", "step: multiply the lr by gamma every step_size steps", &s.step_size);
  t.add("optim.gamma", "step: decay factor", &s.gamma);
  t.add("optim.total_steps", "cosine: steps to decay over (0: the whole run)", &s.total_steps);
  t.add("optim.min_lr", "cosine: final learning rate", &s.min_lr);

  TrainSection& r = c.train;
  t.add("train.epochs", "passes over the training data", &r.epochs);
  t.add("train.max_steps", "stop after this many optimizer steps (0: train.epochs decides)", &r.max_steps);
  t.add("train.stop_at_step",
        "stop after this step with a checkpoint, as if interrupted; the LR schedule still spans the whole run "
        "(split a run into job-sized pieces; 0: off)",
        &r.stop_at_step);
  t.add("train.batch_size", "samples per rank per micro-step", &r.batch_size);
  t.add("train.accumulation", "micro-steps per optimizer step (gradient accumulation)", &r.accumulation);
  t.add("train.seed", "seed of every random stream (init, dropout, shuffling, augmentation)", &r.seed);
  t.add("train.eval_every", "optimizer steps between evaluations (0: at each epoch end)", &r.eval_every);
  t.add("train.log_every", "optimizer steps between log lines and metrics records", &r.log_every);
  t.add("train.device", "cpu | cuda | cuda:N (cuda: the GPU of the local rank)", &r.device);
  t.add("train.allow_tf32",
        "cuda: TF32 tensor cores for f32 GEMMs (~8x faster on Ampere and later, products rounded to 10 mantissa "
        "bits); off so a GPU run matches the CPU's f32 results",
        &r.allow_tf32);
  t.add("train.precision",
        "f32 | bf16: cuda GEMMs (linear, conv, attention) with bf16 inputs and f32 accumulation; weights, optimizer, "
        "loss and every other op stay f32 (bf16 overrides train.allow_tf32; the CPU has f32 only)",
        &r.precision);
  t.add("train.threads",
        "threads per rank, for OpenBLAS and dtrain's own CPU passes (0: cores on the node / ranks on the node)",
        &r.threads);
  t.add("train.on_nonfinite",
        "a step whose loss or gradient is NaN or infinite: stop (end the run, exit 1, the last checkpoint kept) | "
        "skip (drop the step's update, logged as a skip record in metrics.jsonl)",
        &r.on_nonfinite);
  t.add("train.max_skipped", "skip: this many consecutive skipped steps end the run as stop does", &r.max_skipped);

  CommSection& k = c.comm;
  t.add("comm.backend", "auto | " + names_of(registered_backends()), &k.backend);
  t.add("comm.bucket_mb", "gradient bucket size (MiB)", &k.bucket_mb);
  t.add("comm.first_bucket_mb", "first gradient bucket size (MiB)", &k.first_bucket_mb);
  t.add("comm.timeout_s", "watchdog: a collective not done after this many seconds aborts the job", &k.timeout_s);
  t.add("comm.check_every", "steps between cross-rank parameter checksums (0: never)", &k.check_every);
  t.add("comm.compress", "none | bf16 (gradients on the wire)", &k.compress);
  t.add("comm.zero",
        "1: ZeRO-1, each rank keeps 1/N of the optimizer state: gradients reduce-scattered, each rank "
        "updates its shard, parameters all-gathered (checkpoints stay whole); 0: plain data parallelism",
        &k.zero);
  t.add("comm.fingerprint",
        "check every collective's (sequence, op, dtype, count, root, step) across ranks before it runs, so "
        "mismatched collectives fail at once naming both sides (one 56-byte allgather each)",
        &k.fingerprint);

  CheckpointSection& p = c.checkpoint;
  t.add("checkpoint.dir", "checkpoint directory (empty: <log.dir>/ckpt)", &p.dir);
  t.add("checkpoint.every", "optimizer steps between checkpoints (0: only at the end and on SIGTERM)", &p.every);
  t.add("checkpoint.keep_last", "checkpoints kept (0: all)", &p.keep_last);
  t.add("checkpoint.resume",
        "none | auto (the newest checkpoint in checkpoint.dir that verifies; fails when all are damaged) | "
        "auto-or-fresh (the same, but step 0 when none verifies) | PATH",
        &p.resume);

  LogSection& l = c.log;
  t.add("log.dir", "run directory: metrics.jsonl, default checkpoint dir", &l.dir);
  t.add("log.progress", "auto (a bar for one process on a terminal, else lines) | bar | lines | none", &l.progress);
  t.add("log.trace", "write a Chrome-trace JSON here (empty: none)", &l.trace);
  t.add("log.all_ranks", "log from every rank", &l.all_ranks);
  t.add("log.level", "trace | debug | info | warn | error", &l.level);
  return t;
}

po::options_description key_options(const KeyTable& table) {
  po::options_description desc("configuration keys (INI [section] key = value, or --section.key=value)", 120, 60);
  for (const Key& k : table.keys()) {
    const std::string def = k.get();
    desc.add_options()(k.name.c_str(), po::value<std::string>()->default_value(def, def.empty() ? "\"\"" : def),
                       k.help.c_str());
  }
  return desc;
}

// The value of each option in parse order; a key given twice keeps its last value.
using Values = std::map<std::string, std::string>;
Values collect(const po::parsed_options& parsed) {
  // A bare word (`dtrain train my.ini`) is no option; without this it was dropped silently.
  const auto word = bare_word(parsed);
  DTRAIN_CHECK(!word, "unexpected argument '", word.value_or(""),
               "' (a config file goes after --config; keys are --section.key=value)");
  Values values;
  for (const po::option& o : parsed.options) values[o.string_key] = o.value.empty() ? std::string() : o.value.back();
  return values;
}

Values parse_ini(std::istream& in, const std::string& origin, const po::options_description& desc) {
  try {
    return collect(po::parse_config_file(in, desc, false));
  } catch (const po::error& e) {
    fail(origin, ": ", e.what());
  }
}

void apply_keys(const KeyTable& table, const Values& values) {
  for (const Key& k : table.keys()) {
    auto it = values.find(k.name);
    if (it != values.end()) k.set(it->second);
  }
}

void check_one_of(const char* key, const std::string& value, std::initializer_list<const char*> allowed) {
  for (const char* a : allowed)
    if (value == a) return;
  std::string list;
  for (const char* a : allowed) list.append(list.empty() ? "" : " | ").append(a);
  fail("config key ", key, ": '", value, "' is not one of ", list);
}

// The optimizers and backends with what each is, for --help.
std::string registries_help() {
  std::string out;
  for (const auto& [title, registry] :
       {std::pair{"optimizers (optim.type)", registered_optimizers()},
        std::pair{"communication backends (comm.backend; auto picks one)", registered_backends()}}) {
    out.append(title).append(":\n");
    for (const auto& [name, summary] : registry) {
      char line[256];
      std::snprintf(line, sizeof line, "  %-9s %s\n", name.c_str(), summary.c_str());
      out += line;
    }
  }
  return out;
}

const char* kTrainUsage =
    "usage: dtrain train --config FILE.ini [--section.key=value ...] [--resume auto|PATH|none] [--trace FILE]\n\n"
    "Trains a model data-parallel across the ranks of the launch (mpirun, srun, or one process).\n"
    "Keys come from the INI file ([section] key = value) and the command line (--section.key=value,\n"
    "which wins). Rank 0 logs progress, writes <log.dir>/metrics.jsonl and checkpoints. SIGINT, SIGTERM\n"
    "or SIGUSR1 to the ranks finishes the current step, writes a checkpoint and exits 0 (under mpirun,\n"
    "send SIGUSR1 to mpirun: it forwards that one; Open MPI kills the ranks on SIGTERM to mpirun).\n";

}  // namespace

TrainConfig parse_config_text(const std::string& ini, const std::string& origin) {
  TrainConfig config;
  const KeyTable table = key_table(config);
  std::istringstream in(ini);
  apply_keys(table, parse_ini(in, origin, key_options(table)));
  config.source = origin;
  validate(config);
  return config;
}

TrainArgs parse_train_args(const std::vector<std::string>& args) {
  TrainArgs out;
  TrainConfig& config = out.config;
  const KeyTable table = key_table(config);
  po::options_description general("dtrain train options", 120, 60);
  general.add_options()("help,h", "show this help and every key with its default")("config,c", po::value<std::string>(),
                                                                                   "INI configuration file")(
      "resume", po::value<std::string>(), "same as --checkpoint.resume: none | auto | auto-or-fresh | PATH")(
      "trace", po::value<std::string>(), "same as --log.trace: write a Chrome-trace JSON to FILE");
  po::options_description keys = key_options(table);
  po::options_description all;
  all.add(general).add(keys);

  // "--key=" (an empty value, e.g. --data.test= to turn evaluation off) as "--key" "".
  std::vector<std::string> argv;
  for (const std::string& a : args) {
    if (a.size() > 3 && a.starts_with("--") && a.back() == '=' && a.find('=') == a.size() - 1) {
      argv.push_back(a.substr(0, a.size() - 1));
      argv.emplace_back();
    } else {
      argv.push_back(a);
    }
  }
  Values cli;
  try {
    // No prefix guessing: --train.epoch must not silently mean --train.epochs.
    const int style = po::command_line_style::default_style & ~po::command_line_style::allow_guessing;
    cli = collect(po::command_line_parser(argv).options(all).style(style).run());
  } catch (const po::error& e) {
    fail("command line: ", e.what());
  }
  if (cli.count("help")) {
    std::ostringstream help;
    help << kTrainUsage << "\n" << general << "\n" << keys << "\n" << registries_help();
    out.help = true;
    out.help_text = help.str();
    return out;
  }
  // --resume and --trace are short names of two keys.
  for (const auto& [alias, key] : {std::pair{"resume", "checkpoint.resume"}, std::pair{"trace", "log.trace"}})
    if (cli.count(alias)) cli[key] = cli[alias];
  if (cli.count("config")) {
    config.source = cli["config"];
    std::istringstream in(read_text_file(config.source, "config file"));
    apply_keys(table, parse_ini(in, config.source, keys));
  }
  apply_keys(table, cli);  // the command line wins over the file
  validate(config);
  return out;
}

namespace {

void validate_model(const TrainConfig& c) {
  check_one_of("model.activation", c.model.activation, {"relu", "gelu"});
  DTRAIN_CHECK(c.model.dropout >= 0 && c.model.dropout < 1, "config key model.dropout: ", c.model.dropout,
               " is not in [0, 1)");
  for (int64_t h : c.model.hidden) DTRAIN_CHECK(h > 0, "config key model.hidden: sizes must be positive, got ", h);
  for (int64_t d : c.model.input_shape) DTRAIN_CHECK(d > 0, "config key model.input_shape: dims must be positive");
  DTRAIN_CHECK(c.model.num_classes >= 0, "config key model.num_classes: must be >= 0 (0: from the data)");
  for (const auto& [key, value] :
       {std::pair{"model.n_layer", c.model.n_layer}, std::pair{"model.n_head", c.model.n_head},
        std::pair{"model.n_embd", c.model.n_embd}, std::pair{"model.ctx", c.model.ctx}})
    DTRAIN_CHECK(value > 0, "config key ", key, ": must be positive, got ", value);
  DTRAIN_CHECK(c.model.n_embd % c.model.n_head == 0, "config key model.n_embd: ", c.model.n_embd,
               " is not a multiple of model.n_head (", c.model.n_head, ")");
  DTRAIN_CHECK(c.model.vocab >= 0, "config key model.vocab: must be >= 0 (0: from the data)");
  const auto models = registered_models();
  if (std::find(models.begin(), models.end(), c.model.type) == models.end()) {
    std::string list;
    for (const auto& m : models) list.append(list.empty() ? "" : " | ").append(m);
    fail("config key model.type: '", c.model.type, "' is not a registered model (", list, ")");
  }
}

void validate_data(const TrainConfig& c) {
  DTRAIN_CHECK(!c.data.train.empty(), "config key data.train: a training dataset file is required");
  DTRAIN_CHECK(c.data.max_memory_mb > 0, "config key data.max_memory_mb: must be > 0");
  DTRAIN_CHECK(c.data.prefetch >= 0, "config key data.prefetch: must be >= 0");
  DTRAIN_CHECK(c.data.augment_crop_padding >= 0, "config key data.augment_crop_padding: must be >= 0");
  DTRAIN_CHECK(c.data.eval_windows >= 0, "config key data.eval_windows: must be >= 0 (0: all)");
}

void validate_optim(const TrainConfig& c) {
  check_registered("optim.type", c.optim.type, registered_optimizers());
  DTRAIN_CHECK(c.optim.lr > 0, "config key optim.lr: must be > 0, got ", c.optim.lr);
  DTRAIN_CHECK(c.optim.momentum >= 0 && c.optim.momentum < 1, "config key optim.momentum: must be in [0, 1)");
  DTRAIN_CHECK(c.optim.weight_decay >= 0, "config key optim.weight_decay: must be >= 0");
  DTRAIN_CHECK(c.optim.beta1 >= 0 && c.optim.beta1 < 1, "config key optim.beta1: must be in [0, 1)");
  DTRAIN_CHECK(c.optim.beta2 >= 0 && c.optim.beta2 < 1, "config key optim.beta2: must be in [0, 1)");
  DTRAIN_CHECK(c.optim.eps > 0, "config key optim.eps: must be > 0");
  DTRAIN_CHECK(c.optim.alpha >= 0 && c.optim.alpha < 1, "config key optim.alpha: must be in [0, 1)");
  DTRAIN_CHECK(c.clip_norm >= 0, "config key optim.clip_norm: must be >= 0");
  check_one_of("optim.schedule", c.schedule.type, {"constant", "step", "cosine"});
  DTRAIN_CHECK(c.schedule.warmup_steps >= 0, "config key optim.warmup_steps: must be >= 0");
  DTRAIN_CHECK(c.schedule.step_size > 0, "config key optim.step_size: must be > 0");
  DTRAIN_CHECK(c.schedule.total_steps >= 0, "config key optim.total_steps: must be >= 0");
}

void validate_train(const TrainConfig& c) {
  DTRAIN_CHECK(c.train.epochs >= 1 || c.train.max_steps > 0, "config key train.epochs: must be >= 1");
  DTRAIN_CHECK(c.train.max_steps >= 0, "config key train.max_steps: must be >= 0");
  DTRAIN_CHECK(c.train.stop_at_step >= 0, "config key train.stop_at_step: must be >= 0");
  DTRAIN_CHECK(c.train.batch_size >= 1, "config key train.batch_size: must be >= 1, got ", c.train.batch_size);
  DTRAIN_CHECK(c.train.accumulation >= 1, "config key train.accumulation: must be >= 1");
  DTRAIN_CHECK(c.train.eval_every >= 0, "config key train.eval_every: must be >= 0");
  DTRAIN_CHECK(c.train.log_every >= 1, "config key train.log_every: must be >= 1");
  DTRAIN_CHECK(c.train.threads >= 0 && c.train.threads <= 1024, "config key train.threads: must be 0..1024, got ",
               c.train.threads);
  check_one_of("train.on_nonfinite", c.train.on_nonfinite, {"stop", "skip"});
  check_one_of("train.precision", c.train.precision, {"f32", "bf16"});
  DTRAIN_CHECK(c.train.max_skipped >= 1, "config key train.max_skipped: must be >= 1");
  try {
    (void)Device::parse(c.train.device);
  } catch (const Error&) {
    fail("config key train.device: '", c.train.device, "' is not cpu, cuda or cuda:N");
  }
}

void validate_comm(const TrainConfig& c) {
  if (c.comm.backend != "auto") check_registered("comm.backend", c.comm.backend, registered_backends(), "auto | ");
  DTRAIN_CHECK(c.comm.bucket_mb > 0, "config key comm.bucket_mb: must be > 0");
  DTRAIN_CHECK(c.comm.first_bucket_mb > 0, "config key comm.first_bucket_mb: must be > 0");
  DTRAIN_CHECK(c.comm.timeout_s > 0, "config key comm.timeout_s: must be > 0");
  DTRAIN_CHECK(c.comm.check_every >= 0, "config key comm.check_every: must be >= 0");
  check_one_of("comm.compress", c.comm.compress, {"none", "bf16"});
  DTRAIN_CHECK(c.comm.zero == 0 || c.comm.zero == 1, "config key comm.zero: must be 0 or 1, got ", c.comm.zero);
  DTRAIN_CHECK(c.comm.zero == 0 || c.comm.compress == "none",
               "config keys comm.zero and comm.compress: comm.zero=1 does not support comm.compress=bf16");
}

void validate_checkpoint_and_log(const TrainConfig& c) {
  DTRAIN_CHECK(c.checkpoint.every >= 0, "config key checkpoint.every: must be >= 0");
  DTRAIN_CHECK(c.checkpoint.keep_last >= 0, "config key checkpoint.keep_last: must be >= 0");
  DTRAIN_CHECK(!c.checkpoint.resume.empty(),
               "config key checkpoint.resume: none, auto, auto-or-fresh or a checkpoint path");

  DTRAIN_CHECK(!c.log.dir.empty(), "config key log.dir: a directory is required");
  check_one_of("log.progress", c.log.progress, {"auto", "bar", "lines", "none"});
  check_one_of("log.level", c.log.level, {"trace", "debug", "info", "warn", "error"});
}

}  // namespace

void validate(const TrainConfig& c) {
  validate_model(c);
  validate_data(c);
  validate_optim(c);
  validate_train(c);
  validate_comm(c);
  validate_checkpoint_and_log(c);
}

std::string to_ini(const TrainConfig& config) {
  TrainConfig copy = config;  // the table binds to a mutable config; reading does not change it
  const KeyTable table = key_table(copy);
  std::ostringstream out;
  std::string section;
  for (const Key& k : table.keys()) {
    const auto dot = k.name.find('.');
    const std::string sec = k.name.substr(0, dot);
    if (sec != section) {
      out << (section.empty() ? "" : "\n") << "[" << sec << "]\n";
      section = sec;
    }
    out << k.name.substr(dot + 1) << " = " << k.get() << "\n";
  }
  return out.str();
}

}  // namespace dtrain
