"""`tinygrad-np compare`: hand-derived gradients against autograd, on real digits.

Three sources of hand-written backprop: the tutorial's own functions (the default), the tutorial's
derivation generalised to an MLP (``--hidden-sizes``), or your file (``--manual my_net.py[:forward,backward]``),
whose functions are called by their arguments' names in their own layout (`tinygrad_np.compare.binding`).
The first two are reference networks found by name in the `tinygrad_np.references` entry-point group
(`tutorial` and `mlp`, from the repository's models/), so the library never imports them.

Exit status: 0 when nothing FAILs, 1 when something does, 2 when the inputs are unusable (message on stderr).
"""

from __future__ import annotations

import argparse
import functools
from types import ModuleType

import numpy as np

from tinygrad_np.cli.command import Command, plugin
from tinygrad_np.cli.common import finite_number, non_negative_int, number, option_errors, whole_number
from tinygrad_np.compare.layers import ACTIVATIONS, describe
from tinygrad_np.compare.layout import NAMED_LAYOUTS
from tinygrad_np.compare.manual import ManualCode, load_manual, model_for
from tinygrad_np.compare.model import compare_model
from tinygrad_np.compare.network import compare_network
from tinygrad_np.compare.objective import LOSSES
from tinygrad_np.compare.report import GradientReport
from tinygrad_np.errors import UserError
from tinygrad_np.nn.init import INITS
from tinygrad_np.spec import cnn_spec, mlp_spec, model_from_spec
from tinygrad_np.train.config import MLP_HIDDEN_SIZES

REFERENCES_GROUP = "tinygrad_np.references"
DESCRIPTION = (
    "Compare hand-derived backprop (the tutorial's 784-10-10 network, an MLP with --hidden-sizes, the CNN with "
    "--model cnn, or your own file with --manual) with autograd on a batch of MNIST: forward pass per layer, then "
    "every parameter's gradient. Exit status 0 when all agree, 1 on any FAIL."
)


def _assignment(text: str) -> tuple[str, float]:
    """--arg NAME=VALUE: a name the user's functions take, and its finite value."""
    name, equals, value = text.partition("=")
    if not equals or not name.strip().isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE (e.g. lambd=0.7), got {text!r}")
    return name.strip(), finite_number(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The compare subcommand's options, all parsed here."""
    parser.add_argument("--model", choices=("tutorial", "mlp", "cnn"), default=None,
                        help="the reference network: the tutorial's 784-10-10 (the default), an MLP (the default with "
                             "--hidden-sizes), or the LeNet-style CNN of models/cnn.py, layer by layer")
    parser.add_argument("--hidden-sizes", type=whole_number, nargs="+", default=None, metavar="N",
                        help="an MLP with these hidden layers (default: the tutorial network, 784-10-10, with the "
                             "tutorial's own forward_prop/backward_prop); with --manual, the sizes your init needs")
    parser.add_argument("--batch-size", type=whole_number, default=64, help="examples in the batch (default 64)")
    parser.add_argument("--split", choices=("train", "test"), default="train", help="MNIST split to draw from")
    parser.add_argument("--data-dir", default=None, help="folder with the MNIST files (default: see load_mnist)")
    parser.add_argument("--offline", action="store_true", help="use the bundled offline sample, no download")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                        help="the model's dtype (float64 gives a crisp verdict; float32 shows rounding)")
    parser.add_argument("--init", choices=INITS, default=None,
                        help="weight init (default: tutorial's U(-0.5, 0.5) for the tutorial network, he for MLPs)")
    parser.add_argument("--weight-decay", type=number, default=0.0, help="L2 penalty wd/2 ||W||^2 on weights")
    parser.add_argument("--dropout", type=number, default=0.0,
                        help="dropout probability for MLP hidden layers, masks drawn from --seed")
    parser.add_argument("--numerical", action="store_true",
                        help="also compute central-difference gradients in float64 and blame the wrong side")
    parser.add_argument("--numerical-entries", type=non_negative_int, default=1000,
                        help="at most this many entries per parameter are differenced (0: all; default 1000)")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="seed for the init, the batch and the dropout masks")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    own = parser.add_argument_group("your own code (--manual)")
    own.add_argument("--manual", metavar="FILE[:FORWARD,BACKWARD]",
                     help="compare your file's backward function (found by its usual names, or named after ':'), "
                          "called by its arguments' names; its init function, if any, gives the parameters")
    own.add_argument("--layout", choices=[name for name in NAMED_LAYOUTS if name != "tutorial"], default=None,
                     help="column (X = x.T, W (out, in), b (n, 1)), torch (x, W (out, in), b (n,)) or row "
                          "(x, W (in, out), b (n,) or (1, n)); default: detected from your parameters' shapes")
    own.add_argument("--loss", choices=LOSSES, default="cross_entropy",
                     help="what your backward differentiates (default cross_entropy; quadratic is 1/2 ||a - y||^2)")
    own.add_argument("--reduction", choices=("mean", "sum"), default="mean",
                     help="mean (the 1/m in dW, default) or sum over the batch")
    own.add_argument("--l2", default=None, metavar="EXPR",
                     help="the L2 term as your code writes it: 'lambd/m * W', 'reg * sum(W**2)', 'wd/2 * ||W||^2' "
                          "(give the names' values with --arg)")
    own.add_argument("--arg", type=_assignment, action="append", default=[], metavar="NAME=VALUE",
                     help="a value your functions take by name, or the --l2 expression uses (repeatable)")
    own.add_argument("--activation", choices=list(ACTIVATIONS), default=None,
                     help="the hidden layers' activation (default: read off your forward pass)")
    own.add_argument("--output-activation", choices=list(ACTIVATIONS), default=None,
                     help="the output layer's activation for --loss mse/quadratic (default: read off your forward)")
    own.add_argument("--targets", choices=("labels", "one_hot"), default=None,
                     help="how Y is handed to your code (default: labels, one-hot for the squared losses)")
    own.add_argument("--per-example", action="store_true",
                     help="your backward takes one example at a time; the gradients are averaged (or summed)")
    own.add_argument("--maximize", action="store_true",
                     help="your code does gradient ascent: it returns the gradient of -(loss + L2)")


def reference(name: str) -> ModuleType:
    """The hand-derived reference network `name` ("tutorial" or "mlp"), from the installed tools."""
    module = plugin(REFERENCES_GROUP, name)
    if module is None:
        raise UserError(f"no reference network {name!r} is installed (entry-point group {REFERENCES_GROUP}); "
                        "reinstall tinygrad-np")
    return module


def run(args: argparse.Namespace) -> int:
    """Print the report (table or JSON); 0 when nothing FAILs, 1 on a FAIL."""
    report = build(args)
    print(report.to_json() if args.json else report.format())
    return 0 if report.passed else 1


def _batch(args: argparse.Namespace, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    from tinygrad_np.data import load_mnist

    images, labels = load_mnist(args.data_dir, offline=args.offline, verbose=not args.json).arrays(args.split)
    if not 1 <= args.batch_size <= len(images):
        raise UserError(f"--batch-size must be between 1 and {len(images)} (the {args.split} split's size), "
                        f"got {args.batch_size}")
    chosen = np.sort(rng.choice(len(images), size=args.batch_size, replace=False))
    return images[chosen].astype(args.dtype), labels[chosen]


def _manual(args: argparse.Namespace, code: ManualCode, x: np.ndarray, y: np.ndarray, options: dict
            ) -> GradientReport:
    """--manual: the user's file, its model built from its own parameters and forward pass."""
    arguments = dict(args.arg)
    model, params, notes = model_for(code, x, hidden_sizes=args.hidden_sizes, layout=args.layout,
                                     activation=args.activation, output_activation=args.output_activation,
                                     loss=args.loss, arguments=arguments, seed=args.seed, dtype=np.dtype(args.dtype))
    report = compare_model(model, code.backward, x, y, manual_forward=code.forward, params=params, layout=args.layout,
                           loss=args.loss, reduction=args.reduction, l2=args.l2, arguments=arguments,
                           targets=args.targets, per_example=args.per_example, maximize=args.maximize, **options)
    context = [line for line in report.context if not line.startswith("parameters:")]  # say where from, not params=
    report.context = [context[0], f"model: {describe(model)}", *notes, *context[1:]]
    return report


def build(args: argparse.Namespace) -> GradientReport:
    """Load the batch, build the network and its hand-derived functions, and compare."""
    rng = np.random.default_rng(args.seed)
    options = {"numerical": args.numerical, "seed": args.seed, "numerical_entries": args.numerical_entries or None}
    if args.manual is not None:  # the user's file first: its mistakes show before any data is loaded
        if args.dropout or args.weight_decay:
            raise UserError("--dropout and --weight-decay are for the reference networks; with --manual declare "
                            "your L2 term as your code writes it: --l2 'lambd/m * W' --arg lambd=0.7")
        code = load_manual(args.manual)
        return _manual(args, code, *_batch(args, rng), options)
    own_only = [flag for flag, value in (("--layout", args.layout), ("--l2", args.l2), ("--arg", args.arg),
                                         ("--activation", args.activation), ("--targets", args.targets),
                                         ("--output-activation", args.output_activation),
                                         ("--per-example", args.per_example), ("--maximize", args.maximize))
                if value]
    if own_only or args.loss != "cross_entropy" or args.reduction != "mean":
        raise UserError(f"{', '.join(own_only) or '--loss/--reduction'} describe your own code: use them with "
                        "--manual my_net.py")
    network = args.model or ("mlp" if args.hidden_sizes is not None else "tutorial")
    if network == "cnn":
        return _cnn(args, rng, options)
    if network == "tutorial" and args.hidden_sizes is not None:
        raise UserError("--hidden-sizes is for an MLP: use --model mlp (the tutorial network is 784-10-10)")
    x, y = _batch(args, rng)

    mlp_reference = reference("mlp")
    options["l2"] = args.weight_decay or None
    if args.hidden_sizes is None:
        if args.dropout:
            raise UserError("--dropout needs an MLP (--hidden-sizes); the tutorial network has no dropout")
        tutorial = reference("tutorial")
        # The batch, then the weights, then the dropout masks: all from one stream, seeded by --seed.
        model = model_from_spec(mlp_spec(x.shape[1], [10], 10, init=args.init or "tutorial", dtype=args.dtype), rng)
        forward, backward = tutorial.forward_prop, tutorial.backward_prop
        if args.weight_decay:
            forward = mlp_reference.manual_forward
            backward = functools.partial(mlp_reference.manual_backward, weight_decay=args.weight_decay)
        return compare_model(model, backward, x, y, manual_forward=forward, layout="column", **options)

    hidden_sizes = args.hidden_sizes if args.hidden_sizes is not None else list(MLP_HIDDEN_SIZES)
    spec = mlp_spec(x.shape[1], hidden_sizes, 10, dropout=args.dropout, init=args.init or "he", dtype=args.dtype)
    with option_errors({"out_features": "--hidden-sizes", "p": "--dropout"}):
        model = model_from_spec(spec, rng)
    masks = None
    if args.dropout:
        masks = mlp_reference.draw_dropout_masks(hidden_sizes, len(x), args.dropout, rng)
    hand = {"dropout_masks": masks, "dropout": args.dropout}
    return compare_model(
        model,
        functools.partial(mlp_reference.manual_backward, weight_decay=args.weight_decay, **hand),
        x,
        y,
        manual_forward=functools.partial(mlp_reference.manual_forward, **hand),
        layout="column",
        dropout_masks=masks,
        **options,
    )


def _cnn(args: argparse.Namespace, rng: np.random.Generator, options: dict) -> GradientReport:
    """--model cnn: models/cnn.py's hand-derived forward and backward beside autograd, layer by layer."""
    unused = [flag for flag, value in (("--hidden-sizes", args.hidden_sizes), ("--dropout", args.dropout),
                                       ("--weight-decay", args.weight_decay)) if value]
    if unused:
        raise UserError(f"{', '.join(unused)} don't apply to --model cnn (its layers are fixed: models/cnn.py)")
    cnn = reference("cnn")
    images, y = _batch(args, rng)
    x = images.reshape(len(images), 1, 28, 28)
    # The batch, then the weights: one stream, seeded by --seed.
    model = model_from_spec(cnn_spec(init=args.init or "pytorch", dtype=args.dtype), rng)
    return compare_network(model, cnn.forward_prop, cnn.backward_prop, x, y, parameters=cnn.tutorial_names(model),
                           layers=cnn.ACTIVATION_LAYERS, numerical=options["numerical"],
                           numerical_entries=options["numerical_entries"], seed=options["seed"])


COMMAND = Command(
    "compare", "compare hand-derived and automatic gradients, parameter by parameter", add_arguments, run,
    description=DESCRIPTION,
)
