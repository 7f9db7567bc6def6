package injection

// +kubebuilder:webhook:path=/mutate-v1-pod,mutating=true,failurePolicy=fail,sideEffects=None,groups="",resources=pods,verbs=create,versions=v1,name=inject.softreload.dev,admissionReviewVersions=v1,reinvocationPolicy=Never
