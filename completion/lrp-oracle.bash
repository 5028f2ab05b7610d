# bash completion for lrp-oracle (installed by `make install` into
# PREFIX/share/bash-completion/completions/lrp-oracle).  Uses only bash
# builtins (compgen, complete), so it works without the bash-completion
# package too.

_lrp_oracle()
{
    local cur prev cmd
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD-1]}
    cmd=${COMP_WORDS[1]}
    local commands="info gen suite golden check compare heatmap trace reference fast import-keras help"
    local rules="--composite --rule --convention --eps --gamma --alpha --beta --box --no-bias --flag --bn --ln --prec --threads"
    local report="--json --junit --html --wide --explain --no-proof --expect --profile --strict --verbose --no-color --help"

    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W "$commands --help --version" -- "$cur"))
        return 0
    fi
    case "$prev" in
    --composite)
        COMPREPLY=($(compgen -W "EpsilonPlus EpsilonPlusFlat EpsilonAlpha2Beta1 EpsilonAlpha2Beta1Flat EpsilonGammaBox SequentialPresetA SequentialPresetB AttnLRP CPLRP" -- "$cur"))
        return 0 ;;
    --rule)
        COMPREPLY=($(compgen -W "lrp0 epsilon gamma alphabeta alpha1beta0 alpha2beta1 zplus wsquare flat zbox" -- "$cur"))
        return 0 ;;
    --convention)
        COMPREPLY=($(compgen -W "sign0_pos signbit sign0_zero zero_only skip_zero positive" -- "$cur"))
        return 0 ;;
    --flag)
        COMPREPLY=($(compgen -W "gamma_generalized zennit_gamma_drop0 innvestigate_ab_fullbias captum_a1b0 captum_gamma_fullbias wta_split_ties captum_maxpool_eps" -- "$cur"))
        return 0 ;;
    --bn)
        COMPREPLY=($(compgen -W "explicit fine canonize pass" -- "$cur"))
        return 0 ;;
    --split)
        COMPREPLY=($(compgen -W "samples layer" -- "$cur"))
        return 0 ;;
    --ln)
        COMPREPLY=($(compgen -W "linear fine identity" -- "$cur"))
        return 0 ;;
    --profile)
        COMPREPLY=($(compgen -W "zennit captum innvestigate innvestigate-2018 rpjl lrp-toolbox lrp-toolbox-caffe lxt lxt-explicit" -- "$cur"))
        return 0 ;;
    --expect)
        COMPREPLY=($(compgen -W "PASS ILL-CONDITIONED UNRESOLVED SUSPECT FAIL NONFINITE" -- "$cur"))
        return 0 ;;
    --out|--dir|--html)
        COMPREPLY=($(compgen -d -- "$cur"))
        return 0 ;;
    --json|--junit|--keep)
        COMPREPLY=($(compgen -f -- "$cur"))
        return 0 ;;
    --eps|--gamma|--alpha|--beta|--box|--prec|--threads|--seed|--source|--only|--layers|--samples)
        return 0 ;;
    esac
    local opts=""
    case "$cmd" in
    help) COMPREPLY=($(compgen -W "$commands" -- "$cur")); return 0 ;;
    check) opts="$rules $report --keep --progress --identify --no-identify --recomputed-denominators" ;;
    compare) opts="$rules $report --source --require-all --keep --progress --identify --no-identify --recomputed-denominators" ;;
    trace) opts="$rules --no-color --help" ;;
    reference) opts="$rules --out --trace-only --split --help" ;;
    fast) opts="$rules --out --trace-only --help" ;;
    heatmap) opts="$rules --out --source --layers --samples --no-proof --help" ;;
    suite) opts="--dir --only --json --junit --html --wide --explain --verbose --no-color --help" ;;
    golden) opts="--dir --update --html --help" ;;
    gen) opts="--out --seed --list --help" ;;
    info) opts="--wide --help" ;;
    import-keras) opts="--help" ;;
    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    else
        COMPREPLY=($(compgen -f -X '!*.h5' -- "$cur") $(compgen -d -- "$cur"))
    fi
    return 0
}
complete -F _lrp_oracle lrp-oracle
