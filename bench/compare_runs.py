"""Compares two folders of bench/bit-identity.sh: metrics (timings left out), best-model tensors,
config.toml and .qornn files must be identical. Prints one line per run and ALL SAME or SOME DIFFER."""
import json,sys,os,filecmp
A,B=sys.argv[1],sys.argv[2]
def strip(d):
    return {k:v for k,v in d.items() if not any(x in k for x in ('second','time','per_s','elapsed','wall'))}
ok=True
for n in sorted(os.listdir(A)):
    pa=os.path.join(A,n); pb=os.path.join(B,n)
    if os.path.isdir(pa):
        la=[strip(json.loads(l)) for l in open(os.path.join(pa,'metrics.jsonl'))]
        lb=[strip(json.loads(l)) for l in open(os.path.join(pb,'metrics.jsonl'))] if os.path.exists(os.path.join(pb,'metrics.jsonl')) else None
        same = la==lb
        from safetensors.numpy import load_file
        import numpy as np
        if lb is not None:
            ta=load_file(os.path.join(pa,'best.safetensors')); tb=load_file(os.path.join(pb,'best.safetensors'))
            st = sorted(ta)==sorted(tb) and all(np.array_equal(ta[k],tb[k]) for k in ta)
        else: st=False
        ca=open(os.path.join(pa,'config.toml')).read(); cb=open(os.path.join(pb,'config.toml')).read() if os.path.exists(os.path.join(pb,'config.toml')) else ''
        if ca!=cb: print(n,'config.toml DIFF'); ok=False
        print(f"{n:12s} metrics {'SAME' if same else 'DIFF'} ({len(la)} lines)  best tensors {'SAME' if st else 'DIFF'}")
        ok &= same and st
    elif n.endswith('.qornn'):
        same=os.path.exists(pb) and filecmp.cmp(pa,pb,shallow=False)
        print(f"{n:12s} {'SAME' if same else 'DIFF'}"); ok&=same
print("ALL SAME" if ok else "SOME DIFFER")
