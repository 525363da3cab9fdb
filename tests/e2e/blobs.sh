# Sourced by the e2e scripts: a tiny, easily learned classification dataset.
# make_blobs DTRAIN DIR: DIR/train.h5 (512 samples) and DIR/test.h5 (256), 4 classes, 16 features;
# class c is shifted by +2 in the features j with j % 4 == c (noise: a sum of 3 uniforms).
make_blobs() {
  local dtrain=$1 dir=$2 split n seed
  for split in train:512:1 test:256:2; do
    IFS=: read -r name n seed <<< "$split"
    awk -v n="$n" -v seed="$seed" 'BEGIN { srand(seed); for (i = 0; i < n; i++) { c = i % 4; line = c;
      for (j = 0; j < 16; j++) line = line "," sprintf("%.4f", (j % 4 == c ? 2 : 0) + rand() + rand() + rand() - 1.5);
      print line } }' > "$dir/$name.csv"
    "$dtrain" data convert --from csv --header no --num-classes 4 --input "$dir/$name.csv" --out "$dir/$name.h5" > /dev/null
  done
}
